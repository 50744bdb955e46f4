"""Spice end to end: many templates in the agent and in ``loader run``, the runner rendering a
spicepod, and the reload-or-restart decision each change gets (real store, agent, runner and
child processes; no Spice runtime here: the decision and the files are what is checked)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.procs import LiveStore, Proc, loader_env, run_loader, start_agent, start_runner
from tests.procs import wait_until as _wait_until

# Dataset params (reloaded by the pods watcher) through loader's spelling; the runtime's own
# ${secrets:...} reference is left for it.
POD = """\
version: v1
kind: Spicepod
name: shop
datasets:
  - from: postgres:orders
    name: orders
    params:
      pg_pass: $<secrets:DS_PASS>
      pg_user: ${secrets:PG_USER}
"""
# Runtime settings: read once at start-up.
SETTINGS = json.dumps(
    {
        "version": "v1",
        "kind": "Spicepod",
        "name": "auth",
        "runtime": {"auth": {"api-key": {"keys": ["$<secrets:API_KEY>"]}}},
    }
)
NOTE = "note=$<secrets:NOTE>\n"
CANARIES = {"DS_PASS": "canary-ds-1 'q' #", "API_KEY": "canary-key-1", "NOTE": "canary-note-1"}


def wait_until(predicate: object, what: str) -> None:
    _wait_until(predicate, timeout=30, what=what)  # type: ignore[arg-type]


def lines(proc: Proc, word: str) -> list[str]:
    return [line for line in proc.logs().splitlines() if word in line]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    live = LiveStore.start(tmp_path, "spice-app")
    for name, value in CANARIES.items():
        live.put(name, value)
    try:
        yield live
    finally:
        live.proc.stop()


def test_agent_many_templates_all_or_nothing_and_decisions(
    live: LiveStore, shm: Path, tmp_path: Path
) -> None:
    """1. three templates (yaml, json, text) render; the first render runs --on-change;
    2. a dataset-only change rewrites the spicepod and does not run --on-change;
    3. a runtime-settings change runs it; 4. a template that cannot render (a missing secret)
    keeps every file, even one a later change would rewrite; 5. once it can, all are written."""
    src = tmp_path / "templates"
    src.mkdir()
    (src / "spicepod.yaml").write_text(POD)
    (src / "auth.json").write_text(SETTINGS)
    (src / "note").write_text(NOTE)
    pod, auth, note = shm / "spicepod.yaml", shm / "auth.json", shm / "note.txt"
    marker = tmp_path / "on-change.log"
    agent = start_agent(
        tmp_path / "agent.log",
        "--template",
        f"{src / 'spicepod.yaml'}:{pod}",
        "--template",
        f"{src / 'auth.json'}:{auth}",
        "--template",
        f"{src / 'note'}:{note}",
        "--listen",
        "off",
        "--on-change",
        f"echo run >> {marker}",
        env=loader_env(
            LOADER_STORE_URL=live.url,
            LOADER_TOKEN=live.token("secrets:reveal"),
            LOADER_APP=str(live.app),
        ),
        wait_listening=False,
    )

    def runs() -> int:
        return marker.read_text().count("run") if marker.exists() else 0

    def params() -> dict[str, str]:
        return dict(yaml.safe_load(pod.read_text())["datasets"][0]["params"])

    try:
        # 1
        wait_until(lambda: runs() == 1, "first render and --on-change")
        assert params() == {"pg_pass": CANARIES["DS_PASS"], "pg_user": "${secrets:PG_USER}"}
        assert json.loads(auth.read_text())["runtime"]["auth"]["api-key"]["keys"] == [
            "canary-key-1"
        ]
        assert note.read_text() == "note=canary-note-1\n"
        # 2
        live.put("DS_PASS", "ds-2")
        wait_until(lambda: params()["pg_pass"] == "ds-2", "dataset change")
        wait_until(lambda: lines(agent, "rewrite only"), "the decision")
        time.sleep(0.5)
        assert runs() == 1
        # 3
        live.put("API_KEY", "key-2")
        wait_until(lambda: runs() == 2, "--on-change after a runtime settings change")
        assert "API_KEY reaches runtime settings in " + str(auth) in agent.logs()
        # 4
        (src / "note").write_text("note=$<secrets:NOTE> $<secrets:NOT_YET>\n")
        wait_until(lambda: lines(agent, "NOT_YET"), "the refusal")
        before = {p: p.read_bytes() for p in (pod, auth, note)}
        live.put("DS_PASS", "ds-3")
        wait_until(lambda: len(lines(agent, "keeping the last good files")) >= 2, "refusal 2")
        assert {p: p.read_bytes() for p in (pod, auth, note)} == before
        # 5
        live.put("NOT_YET", "here")
        wait_until(lambda: note.read_text() == "note=canary-note-1 here\n", "all rendered")
        assert params()["pg_pass"] == "ds-3"
    finally:
        agent.stop()
    log = agent.logs()
    for value in (*CANARIES.values(), "ds-2", "ds-3", "key-2"):
        assert value not in log
    decisions = [line for line in log.splitlines() if "restart" in line or "rewrite" in line]
    print("\n".join(decisions))


CHILD = """
import os, sys, time
log, pod = sys.argv[1], sys.argv[2]
env_only = os.environ.get("ENV_ONLY")
with open(log, "a") as f:
    f.write(f"start {os.getpid()} ENV_ONLY={env_only} pod={open(pod).read()!r}\\n")
while True:
    time.sleep(1)
"""


def test_runner_renders_a_spicepod_and_restarts_only_when_needed(shm: Path, tmp_path: Path) -> None:
    """``loader run --watch --template`` from a file source: 1. the spicepod is rendered before
    the child starts; 2. a dataset-only change rewrites it, no restart; 3. a runtime settings
    change restarts; 4. a change to the child's environment restarts; 5. a value that cannot
    render keeps the child and the file; 6. then a good change goes through."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text("DS_PASS=one\nAPI_KEY=k1\nENV_ONLY=e1\n")
    template = tmp_path / "spicepod.yaml"
    template.write_text(POD + "runtime:\n  auth:\n    api-key:\n      keys: [$<secrets:API_KEY>]\n")
    pod = shm / "app" / "spicepod.yaml"
    pod.parent.mkdir()
    starts = tmp_path / "starts.log"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    runner = start_runner(
        tmp_path / "runner.log",
        [
            "--watch",
            "--from-file",
            str(secrets),
            "--only",
            "ENV_ONLY",
            "--template",
            f"{template}:{pod}",
            "--debounce",
            "0.1s",
            "--log-level",
            "info",
        ],
        [sys.executable, str(child), str(starts), str(pod)],
        env=loader_env(),
    )

    def started() -> list[str]:
        return starts.read_text().splitlines() if starts.exists() else []

    def write(text: str) -> None:
        tmp = secrets.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(secrets)

    try:
        # 1
        wait_until(lambda: len(started()) == 1, "the child")
        assert 'pg_pass: "one"' in started()[0] and "ENV_ONLY=e1" in started()[0]
        # 2
        write("DS_PASS=two\nAPI_KEY=k1\nENV_ONLY=e1\n")
        wait_until(lambda: '"two"' in pod.read_text(), "the dataset change")
        wait_until(lambda: lines(runner, "rewrite only"), "the decision")
        time.sleep(0.5)
        assert len(started()) == 1
        # 3
        write("DS_PASS=two\nAPI_KEY=k2\nENV_ONLY=e1\n")
        wait_until(lambda: len(started()) == 2, "restart for runtime settings")
        assert '["k2"]' in started()[1]
        # 4
        write("DS_PASS=two\nAPI_KEY=k2\nENV_ONLY=e2\n")
        wait_until(lambda: len(started()) == 3, "restart for the environment")
        assert "ENV_ONLY=e2" in started()[2]
        assert lines(runner, "ENV_ONLY reaches the environment")
        # 5
        before = pod.read_bytes()
        write("DS_PASS=${env:HOME}x\nAPI_KEY=k2\nENV_ONLY=e2\n")
        wait_until(lambda: lines(runner, "keeping the running command"), "the refusal")
        assert pod.read_bytes() == before and len(started()) == 3
        # 6
        write("DS_PASS=three\nAPI_KEY=k2\nENV_ONLY=e2\n")
        wait_until(lambda: '"three"' in pod.read_text(), "the next change")
        time.sleep(0.3)
        assert len(started()) == 3
        assert runner.proc.poll() is None
        assert not lines(runner, "no action")  # the first values read are no change
    finally:
        runner.stop()
    print("\n".join(lines(runner, ":")))


def test_runner_exec_mode_renders_templates_then_becomes_the_command(
    shm: Path, tmp_path: Path
) -> None:
    """Without --watch: every template written before exec (the old LOADER_TEMPLATE /
    LOADER_TEMPLATE_OUTPUT pair too); one that cannot render writes none and exits 65."""
    secrets = tmp_path / "s.env"
    secrets.write_text("DS_PASS=p1\nNOTE=n1\n")
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "note.txt").write_text(NOTE)
    env = loader_env(
        LOADER_TEMPLATE=str(tmp_path / "pod.yaml"), LOADER_TEMPLATE_OUTPUT=str(shm / "pod.yaml")
    )
    out = run_loader(
        "run", "--from-file", str(secrets), "--", "cat", str(shm / "pod.yaml"), env=env
    )
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["datasets"][0]["params"]["pg_pass"] == "p1"

    flags = ["--template", f"{tmp_path / 'pod.yaml'}:{shm / 'a.yaml'}"]
    flags += ["--template", f"{tmp_path / 'note.txt'}:{shm / 'b.txt'}"]
    ok = run_loader("run", "--from-file", str(secrets), *flags, "--", "cat", str(shm / "b.txt"))
    assert ok.returncode == 0 and ok.stdout == b"note=n1\n"
    secrets.write_text("DS_PASS=p2\n")  # NOTE gone: the text template cannot render
    bad = run_loader("run", "--from-file", str(secrets), *flags, "--", "true")
    assert bad.returncode == 65
    assert "NOTE" in bad.stderr.decode() and len(bad.stderr.decode().splitlines()) == 1
    assert b"p1" in (shm / "a.yaml").read_bytes()  # not rewritten with p2

    usage = run_loader("run", "--from-file", str(secrets), "--template", "x.yaml", "--", "true")
    assert usage.returncode == 64 and "SRC:DEST" in usage.stderr.decode()
    disk = run_loader(
        "run", "--from-file", str(secrets), "--template", f"x:{tmp_path / 'o'}", "--", "true"
    )
    assert disk.returncode == 78
