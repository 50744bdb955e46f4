"""`loader run` with real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loader import formats
from loader.httpclient import HttpClient
from tests.procs import (
    LOADER,
    create_token,
    free_port,
    init_store,
    loader_env,
    run_loader,
    spawn,
    start_agent,
    start_store,
    wait_until,
)

PY = sys.executable
SECRET = "runner-canary-4f1c: it's `quoted` #x"


def write_env(path: Path, values: dict[str, str], fmt: str = "dotenv") -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(formats.render(fmt, values))
    tmp.replace(path)  # atomically, like the agent


def dump_env(*names: str) -> list[str]:
    code = f"import json, os; print(json.dumps({{n: os.environ.get(n) for n in {names!r}}}))"
    return [PY, "-c", code]


def test_exec_replaces_the_process(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": SECRET})
    proc = subprocess.Popen(
        [
            *LOADER,
            "run",
            "--from-file",
            str(env_file),
            "--",
            PY,
            "-c",
            "import os; print(os.getpid(), os.getppid())",
        ],
        stdout=subprocess.PIPE,
        env=loader_env(),
    )
    out, _ = proc.communicate(timeout=30)
    pid, ppid = map(int, out.split())
    assert pid == proc.pid
    assert ppid == os.getpid()


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_exec_reads_every_agent_format(tmp_path: Path, fmt: str) -> None:
    values = {"A": SECRET, "B": "two\nlines" if fmt != "docker" else "one line", "E": ""}
    env_file = tmp_path / f"app.{fmt}"
    write_env(env_file, values, fmt)
    out = run_loader("run", "--from-file", str(env_file), "--", *dump_env("A", "B", "E"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == values


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", -15), ("kill -KILL $$", -9)],
)
def test_exit_codes_and_signal_deaths_pass_through(tmp_path: Path, script: str, code: int) -> None:
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "1"})
    out = run_loader("run", "--from-file", str(env_file), "--", "sh", "-c", script)
    assert out.returncode == code
    watched = run_loader("run", "--watch", "--from-file", str(env_file), "--", "sh", "-c", script)
    assert watched.returncode == (code if code >= 0 else 128 - code)


def test_command_errors_and_configuration_exit_codes(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": SECRET})
    not_exec = tmp_path / "script.sh"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    cases = [
        (["--from-file", str(env_file), "--", "definitely-not-a-command-x9"], 127, "not found"),
        (["--from-file", str(env_file), "--", str(not_exec)], 126, "not executable"),
        (["--from-file", str(env_file), "--", str(tmp_path)], 126, "not executable"),
        (["--bogus", "--", "true"], 64, "unknown option"),
        (["--from-file", str(env_file)], 64, "no command"),
        (["--", "true"], 78, "no source"),
        (["--from-file", str(tmp_path / "missing.env"), "--", "true"], 66, "cannot read"),
        (["--from-file", str(env_file), "--format", "xml", "--", "true"], 64, "--format"),
        (
            ["--agent-url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.3", "--", "true"],
            69,
            "unreachable",
        ),
        (["--watch", "--grace", "soon", "--from-file", str(env_file), "--", "true"], 64, "grace"),
    ]
    for args, code, fragment in cases:
        out = run_loader("run", *args)
        lines = out.stderr.decode().strip().splitlines()
        assert out.returncode == code, (args, out.stderr)
        assert len(lines) == 1 and fragment in lines[0], (args, lines)
        assert SECRET not in out.stderr.decode()


def test_stdin_passes_through(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "1"})
    for extra in ([], ["--watch"]):
        out = run_loader(
            "run", *extra, "--from-file", str(env_file), "--", "cat", stdin=b"from stdin\n"
        )
        assert out.stdout == b"from stdin\n"


def test_existing_variables_win_unless_override(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "from-secret", "B": "b-secret", "C": "c-secret"})
    base = loader_env(A="from-environment")
    plain = run_loader("run", "--from-file", str(env_file), "--", *dump_env("A", "B"), env=base)
    assert json.loads(plain.stdout) == {"A": "from-environment", "B": "b-secret"}
    over = run_loader(
        "run", "--override", "--from-file", str(env_file), "--", *dump_env("A"), env=base
    )
    assert json.loads(over.stdout) == {"A": "from-secret"}
    only = run_loader(
        "run",
        "--only",
        "B",
        "--prefix",
        "APP_",
        "--from-file",
        str(env_file),
        "--",
        *dump_env("APP_B", "APP_C", "B"),
        env=base,
    )
    assert json.loads(only.stdout) == {"APP_B": "b-secret", "APP_C": None, "B": None}


CHILD = """
import os, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def on(sig, frame):
    log.write(f"got {signal.Signals(sig).name} in {os.getpid()}\\n")
    if sig == signal.SIGTERM and os.environ.get("IGNORE_TERM") != "1":
        sys.exit(0)
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGWINCH):
    signal.signal(s, on)
# "start" only once the handlers are in: the tests signal the child as soon as they read it.
log.write(f"start {os.getpid()} A={os.environ.get('A')}\\n")
while True:
    time.sleep(0.05)
"""


def _child(tmp_path: Path) -> tuple[Path, Path]:
    script, log = tmp_path / "child.py", tmp_path / "child.log"
    script.write_text(CHILD)
    return script, log


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_watch_restarts_on_change_forwards_signals_and_exits_with_the_child(
    tmp_path: Path,
) -> None:
    """1. child starts with A=v1; 2. SIGUSR1 and SIGWINCH reach it; 3. the file changes: a new
    child with A=v2; 4. an unrelated rewrite (same content) does not restart; 5. SIGTERM to the
    runner: passed on, the child exits 0, so does the runner; no process left behind."""
    script, log = _child(tmp_path)
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "v1"})
    runner = spawn(
        [
            *LOADER,
            "run",
            "--watch",
            "--debounce",
            "0.1",
            "--from-file",
            str(env_file),
            "--",
            PY,
            str(script),
            str(log),
        ],
        tmp_path / "runner.log",
    )
    try:
        wait_until(lambda: any("A=v1" in line for line in _lines(log)), what="first child")
        first_pid = int(_lines(log)[0].split()[1])
        runner.proc.send_signal(signal.SIGUSR1)
        runner.proc.send_signal(signal.SIGWINCH)
        wait_until(lambda: f"got SIGUSR1 in {first_pid}" in _lines(log))
        wait_until(lambda: f"got SIGWINCH in {first_pid}" in _lines(log))
        write_env(env_file, {"A": "v2"})
        wait_until(lambda: any("A=v2" in line for line in _lines(log)), what="restart")
        second_pid = int(next(line for line in _lines(log) if "A=v2" in line).split()[1])
        assert second_pid != first_pid and f"got SIGTERM in {first_pid}" in _lines(log)
        write_env(env_file, {"A": "v2"})
        time.sleep(0.6)
        assert sum(line.startswith("start") for line in _lines(log)) == 2
    finally:
        code = runner.stop(signal.SIGTERM)
    assert code == 0
    assert f"got SIGTERM in {second_pid}" in _lines(log)
    for pid in (first_pid, second_pid):
        assert not Path(f"/proc/{pid}").exists()


def test_watch_grace_then_kill_and_reload_signal(tmp_path: Path) -> None:
    """A child that ignores SIGTERM is killed after --grace; --reload-signal only signals."""
    script, log = _child(tmp_path)
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "v1"})
    runner = spawn(
        [
            *LOADER,
            "run",
            "--watch",
            "--grace",
            "0.5",
            "--debounce",
            "0.05",
            "--from-file",
            str(env_file),
            "--",
            PY,
            str(script),
            str(log),
        ],
        tmp_path / "runner.log",
        env=loader_env(IGNORE_TERM="1"),
    )
    try:
        wait_until(lambda: _lines(log))
        write_env(env_file, {"A": "v2"})
        wait_until(lambda: any("A=v2" in line for line in _lines(log)), what="kill and restart")
    finally:
        code = runner.stop(signal.SIGTERM, timeout=10)
    assert code == 137  # the child ignored SIGTERM and was killed after the grace

    log.unlink()
    reloader = spawn(
        [
            *LOADER,
            "run",
            "--watch",
            "--reload-signal",
            "SIGHUP",
            "--debounce",
            "0.05",
            "--from-file",
            str(env_file),
            "--",
            PY,
            str(script),
            str(log),
        ],
        tmp_path / "reload.log",
    )
    try:
        wait_until(lambda: _lines(log))
        pid = int(_lines(log)[0].split()[1])
        write_env(env_file, {"A": "v3"})
        wait_until(lambda: f"got SIGHUP in {pid}" in _lines(log), what="reload signal")
        assert sum(line.startswith("start") for line in _lines(log)) == 1
    finally:
        reloader.stop(signal.SIGTERM)


def test_runner_killed_leaves_no_orphan(tmp_path: Path) -> None:
    script, log = _child(tmp_path)
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "v1"})
    runner = spawn(
        [*LOADER, "run", "--watch", "--from-file", str(env_file), "--", PY, str(script), str(log)],
        tmp_path / "runner.log",
    )
    wait_until(lambda: _lines(log))
    pid = int(_lines(log)[0].split()[1])
    runner.stop(signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), what="child gone with its parent")


def test_mask_replaces_values_split_across_writes(tmp_path: Path) -> None:
    secret = "s3cr3t-9f8e7d-value"
    env_file = tmp_path / "app.env"
    write_env(env_file, {"TOKEN": secret, "SHORT": "abc"})
    import base64
    from urllib.parse import quote

    script = (
        "import os, sys, time\n"
        "v = os.environ['TOKEN']\n"
        "sys.stdout.write('start ' + v[:7]); sys.stdout.flush(); time.sleep(0.3)\n"
        "sys.stdout.write(v[7:] + ' end\\n'); sys.stdout.flush()\n"
        f"print('b64', {base64.b64encode(secret.encode()).decode()!r}, flush=True)\n"
        f"print('url', {quote(secret, safe='')!r}, 'short', os.environ['SHORT'], flush=True)\n"
        "sys.stderr.write('err ' + v + '\\n')\n"
    )
    out = run_loader("run", "--mask", "--from-file", str(env_file), "--", PY, "-c", script)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert secret not in text and secret not in out.stderr.decode()
    assert text.splitlines() == ["start ****** end", "b64 ******", "url ****** short abc"]
    assert "err ******" in out.stderr.decode()


def test_watch_through_a_real_agent_and_store(tmp_path: Path, shm: Path) -> None:
    """1. store + agent (unix socket) + `run --watch` with LOADER_AGENT_URL; 2. the child sees
    the value; 3. a change in the store restarts the child with the new value; the child never
    sees LOADER_TOKEN and the runner's command line holds no value."""
    data = tmp_path / "store"
    admin = init_store(data)
    store = start_store(data, listen=f"127.0.0.1:{free_port()}")
    client = HttpClient(store.url, token=admin)
    app = client.call("POST", "/v1/apps", {"name": "runner"}).json()["id"]
    client.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": SECRET})
    token = create_token(data, "secrets:reveal", app)
    sock = shm / "agent.sock"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        f"unix:{sock}",
        env=loader_env(LOADER_STORE_URL=store.url, LOADER_TOKEN=token, LOADER_APP=str(app)),
    )
    script, log = _child(tmp_path)
    runner = spawn(
        [*LOADER, "run", "--watch", "--debounce", "0.05", "--", PY, str(script), str(log)],
        tmp_path / "runner.log",
        env=loader_env(LOADER_AGENT_URL=f"unix:{sock}", LOADER_TOKEN="lt_should_vanish"),
    )
    try:
        wait_until(lambda: any(SECRET in line for line in _lines(log)), what="first child")
        child_pid = int(_lines(log)[0].split()[1])
        environ = Path(f"/proc/{child_pid}/environ").read_bytes()
        assert b"LOADER_TOKEN" not in environ
        assert SECRET.encode() not in Path(f"/proc/{runner.pid}/cmdline").read_bytes()
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "changed-in-store"})
        wait_until(
            lambda: any("A=changed-in-store" in line for line in _lines(log)),
            what="restart after a store change",
        )
    finally:
        code = runner.stop(signal.SIGTERM)
        agent.stop()  # stopped whatever the runner's code: a failed check leaks no process
        store.stop()
        client.close()
    assert code == 0
    assert SECRET not in runner.logs() + runner.output()


def test_run_straight_from_the_store(tmp_path: Path) -> None:
    data = tmp_path / "store"
    admin = init_store(data)
    store = start_store(data)
    try:
        client = HttpClient(store.url, token=admin)
        app = client.call("POST", "/v1/apps", {"name": "direct"}).json()["id"]
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": SECRET})
        client.close()
        env = loader_env(LOADER_STORE_URL=store.url, LOADER_TOKEN=admin, LOADER_APP=str(app))
        out = run_loader("run", "--", *dump_env("A", "LOADER_TOKEN"), env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"A": SECRET, "LOADER_TOKEN": None}
        refused = run_loader("run", "--", "true", env={**env, "LOADER_TOKEN": admin + "x"})
        assert refused.returncode == 77
        assert admin not in refused.stderr.decode()
        no_app = run_loader("run", "--", "true", env={**env, "LOADER_APP": ""})
        assert no_app.returncode == 78
    finally:
        store.stop()


def test_exec_path_imports_nothing_heavy(tmp_path: Path) -> None:
    """`loader run` runs before every app start: nothing but its own small modules load."""
    env_file = tmp_path / "app.env"
    write_env(env_file, {"A": "1"})
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from loader import cli\n"
        "from loader.runner import execmode\n"
        "execmode.exec_command = lambda cmd, env: print(' '.join(sorted(set(sys.modules) - "
        "before)))\n"
        f"cli.main(['run', '--from-file', {str(env_file)!r}, '--', 'true'])\n"
    )
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert all(m == "__future__" or m.startswith("loader") for m in loaded), loaded
    assert not loaded & {"loader.httpclient", "loader.settings", "loader.runner.supervise"}
