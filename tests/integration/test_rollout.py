"""Rollouts with real runners (``loader run --watch`` processes) and a real store process: they
report, ``rollout status`` follows them, the restart budget paces them, a failing child pauses
the rollout, and a store outage leaves the old children running."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import (
    LiveStore,
    Proc,
    loader_env,
    run_loader,
    start_agent,
    start_runner,
    start_store,
    wait_until,
)

# The app: records "<time> <A>" when it starts (and "start <A>" in a shared log, if given);
# A=bad makes it exit at once (a broken secret).
APP = (
    "import os, sys, time\n"
    "v = os.environ['A']\n"
    "if len(sys.argv) > 2:\n"
    "    with open(sys.argv[2], 'a') as f:\n"
    "        f.write(f'start {v}\\n')\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(f'{time.time()} {v}\\n')\n"
    "if v == 'bad':\n"
    "    sys.exit(3)\n"
    "time.sleep(3600)\n"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    store = LiveStore.start(tmp_path)
    try:
        yield store
    finally:
        store.proc.stop()


def _runners(
    live: LiveStore, tmp_path: Path, count: int, *flags: str, shared: Path | None = None
) -> tuple[list[Proc], list[Path]]:
    """``count`` runners of APP; with ``shared``, each app logs its start there and each
    runner's --ready-check logs "ready" there once its second app has started (so inside
    the time the runner holds its slot for its first restart)."""
    token = live.token("secrets:reveal")
    env = loader_env(LOADER_TOKEN=token)
    procs, starts = [], []
    for i in range(count):
        starts.append(tmp_path / f"starts-{i}")
        procs.append(
            start_runner(
                tmp_path / f"runner-{i}.log",
                [
                    "--watch",
                    "--store-url",
                    live.url,
                    "--app",
                    str(live.app),
                    "--consumer-id",
                    f"runner-{i}",
                    "--log-level",
                    "info",
                    "--grace",
                    "2s",
                    *flags,
                    *(["--ready-check", _second_start(starts[-1], shared)] if shared else []),
                ],
                [sys.executable, "-c", APP, str(starts[-1]), *([str(shared)] if shared else [])],
                env,
            )
        )
    return procs, starts


def _second_start(starts: Path, shared: Path) -> str:
    return f"test $(wc -l < {starts}) -ge 2 && echo ready >> {shared}"


def _values(path: Path) -> list[str]:
    text = path.read_text() if path.exists() else ""
    return [line.split()[1] for line in text.splitlines()]


def _fleet(live: LiveStore) -> dict[str, object]:
    c = live.client()
    try:
        return dict(c.call("GET", f"/v1/apps/{live.app}/environments/default/consumers").json())
    finally:
        c.close()


def _states(live: LiveStore) -> dict[str, str]:
    consumers = _fleet(live)["consumers"]
    assert isinstance(consumers, list)
    return {c["id"]: c["state"] for c in consumers}


def _status(live: LiveStore, *args: str) -> tuple[int, str, str]:
    out = run_loader(
        "rollout",
        "status",
        "--app",
        str(live.app),
        "--store-url",
        live.url,
        *args,
        env=loader_env(LOADER_TOKEN=live.admin),
    )
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def _budget(live: LiveStore, value: str) -> None:
    out = run_loader(
        "rollout",
        "budget",
        "--app",
        str(live.app),
        "--store-url",
        live.url,
        "--max-unavailable",
        value,
        env=loader_env(LOADER_TOKEN=live.admin),
    )
    assert out.returncode == 0, out.stderr


def _stop(procs: list[Proc]) -> None:
    for p in procs:
        p.stop()


def test_runners_report_and_rollout_status_follows_them(live: LiveStore, tmp_path: Path) -> None:
    """1. Two runners on revision 1: listed current, `rollout status` exits 0; 2. a third
    consumer that holds revision 1 forever (a stuck agent): `rollout status --wait --timeout`
    exits 75 naming it, while the runners move to revision 2; 3. it catches up: exit 0."""
    live.put("A", "one")
    procs, starts = _runners(live, tmp_path, 2)
    try:
        wait_until(lambda: _states(live) == {"runner-0": "current", "runner-1": "current"})
        code, out, _ = _status(live)
        assert code == 0 and "rollout complete" in out and "2 of 2" in out

        c = live.client()
        stuck = "id=stuck-agent;kind=agent;host=pod-9;version=0;rendered=1;seq=1"
        c.request(
            "GET",
            f"/v1/apps/{live.app}/environments/default/rendered?mode=full",
            headers={"X-Loader-Consumer": stuck},
        )
        live.put("A", "two")
        wait_until(lambda: all(_values(s)[-1:] == ["two"] for s in starts), what="restarts")
        code, out, err = _status(live, "--wait", "--timeout", "2s")
        assert code == 75, (out, err)
        assert "stuck-agent on pod-9: behind, revision 1" in out
        assert (
            err.splitlines()[-1] == "loader: rollout status: app 1 / default: not complete after 2s"
        )
        assert err.splitlines()[0] == "Waiting: revision 2: 2 of 3 on it (1 behind)"  # not a TTY
        assert _states(live)["runner-0"] == "current"

        c.request(
            "GET",
            f"/v1/apps/{live.app}/environments/default/rendered?mode=full",
            headers={"X-Loader-Consumer": stuck.replace("rendered=1;seq=1", "rendered=2;seq=2")},
        )
        c.close()
        code, out, _ = _status(live, "--wait", "--timeout", "20s", "--json")
        assert code == 0 and json.loads(out)["rollout"]["done"] is True
    finally:
        _stop(procs)


def _most_restarting(shared: Path, value: str) -> tuple[int, int]:
    """From the shared log (one file, appended in the order things happened): the most apps
    started on ``value`` and not yet ready at once, and how many are still not ready."""
    most = now = 0
    for line in shared.read_text().splitlines():
        if line == f"start {value}":
            now += 1
        elif line == "ready":
            now -= 1
        most = max(most, now)
    return most, now


def test_the_budget_paces_concurrent_restarts(live: LiveStore, tmp_path: Path) -> None:
    """Six runners, max-unavailable 2, each new child healthy after its --ready-check and
    1.5 s: the rotation completes in waves; never more than 2 new apps are started and not
    yet ready at once (from one log in the order things happened); the store never shows
    more than 2 slots in use."""
    live.put("A", "one")
    shared = tmp_path / "shared.log"
    procs, starts = _runners(live, tmp_path, 6, "--min-ready", "1.5s", shared=shared)
    try:
        wait_until(lambda: list(_states(live).values()) == ["current"] * 6, timeout=30)
        _budget(live, "2")
        live.put("A", "two")
        in_use = []

        def done() -> bool:
            fleet = _fleet(live)
            rollout = fleet["rollout"]
            assert isinstance(rollout, dict)
            in_use.append(rollout["in_use"])
            return bool(rollout["done"]) and all(_values(s)[-1:] == ["two"] for s in starts)

        wait_until(done, timeout=60, what="the rollout")
        assert max(in_use) <= 2 and max(in_use) >= 1
        assert shared.read_text().count("start two") == 6
        most, still = _most_restarting(shared, "two")
        assert 1 <= most <= 2 and still == 0
    finally:
        _stop(procs)


def test_a_failing_child_pauses_the_rollout(live: LiveStore, tmp_path: Path) -> None:
    """1. Three runners, max-unavailable 1; A=bad: the first runner's new child exits, it goes
    back to A=one and reports failed; the others stay on A=one; status says paused (75);
    2. A=good (the fix): every runner moves to it, status exits 0."""
    live.put("A", "one")
    procs, starts = _runners(live, tmp_path, 3, "--min-ready", "1s")
    try:
        wait_until(lambda: list(_states(live).values()) == ["current"] * 3, timeout=30)
        _budget(live, "1")
        live.put("A", "bad")
        wait_until(lambda: "failed" in _states(live).values(), timeout=30, what="a failure")
        time.sleep(2)  # time enough for another restart, if the pause did not hold
        states = _states(live)
        assert sorted(states.values()) == ["failed", "waiting", "waiting"], states
        for path in starts:
            values = _values(path)
            assert values[-1] == "one", values  # the failed one went back; the others never left
        assert sum(_values(p).count("bad") for p in starts) == 1
        code, out, err = _status(live, "--wait", "--timeout", "30s")
        assert code == 75 and "PAUSED" in out and "paused" in err
        failed = next(p for p in procs if "did not become healthy" in p.logs())
        assert "going back to the previous secrets" in failed.logs()

        live.put("A", "good")
        code, out, _ = _status(live, "--wait", "--timeout", "60s")
        assert code == 0, out
        assert all(_values(p)[-1] == "good" for p in starts)
        assert all(p.proc.poll() is None for p in procs)
    finally:
        _stop(procs)


def test_a_store_outage_during_a_rollout_keeps_the_old_children(
    live: LiveStore, tmp_path: Path
) -> None:
    """1. Two runners, max-unavailable 1, the new child healthy after 3 s; A=two; 2. while
    the first restarts, the store goes down: its slot cannot be given back and the second
    cannot get one -- it keeps its old child; 3. the store comes back: the rotation
    completes (the slot given back late)."""
    live.put("A", "one")
    procs, starts = _runners(live, tmp_path, 2, "--min-ready", "3s")
    try:
        wait_until(lambda: list(_states(live).values()) == ["current"] * 2, timeout=30)
        _budget(live, "1")
        live.put("A", "two")
        wait_until(
            lambda: sum(_values(s)[-1:] == ["two"] for s in starts) == 1, what="the first restart"
        )
        live.proc.stop()
        time.sleep(5)
        assert sorted(_values(s)[-1] for s in starts) == ["one", "two"]
        assert all(p.proc.poll() is None for p in procs)
        live.proc = start_store(live.data, listen=f"127.0.0.1:{live.port}")
        wait_until(
            lambda: all(_values(s)[-1:] == ["two"] for s in starts), timeout=60, what="rollout"
        )
        code, out, _ = _status(live, "--wait", "--timeout", "30s")
        assert code == 0, out
    finally:
        _stop(procs)


def test_an_agent_and_render_once_report(live: LiveStore, tmp_path: Path, shm: Path) -> None:
    """1. `render --once` and an agent read revision 1: listed as `once` and `current` with
    their kinds and revisions; 2. revision 2: the agent's next long-poll says it rendered 2
    (the rollout is done without the init container)."""
    live.put("A", "one")
    token = live.token("secrets:reveal")
    env = loader_env(LOADER_STORE_URL=live.url, LOADER_TOKEN=token, LOADER_APP=str(live.app))
    once = run_loader("render", "--once", "--output", str(shm / "once.env"), env=env)
    assert once.returncode == 0, once.stderr
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "agent.env"),
        "--listen",
        "off",
        env=env,
        wait_listening=False,
    )
    try:

        def kinds() -> dict[str, tuple[str, int]]:
            consumers = _fleet(live)["consumers"]
            assert isinstance(consumers, list)
            return {c["kind"]: (c["state"], c["rendered_revision"]) for c in consumers}

        wait_until(lambda: kinds() == {"render": ("once", 1), "agent": ("current", 1)})
        live.put("A", "two")
        wait_until(lambda: kinds()["agent"] == ("current", 2), what="the agent's report")
        code, out, _ = _status(live)
        assert code == 0, out
    finally:
        agent.stop()
