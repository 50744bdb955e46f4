"""Writing the value a secret already has changes nothing: no version, no revision, no watcher
woken, no app restarted. On both backends, through every write route, the CLI and a runner."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from tests.procs import LiveStore, loader_env, run_loader, start_runner, wait_until
from tests.store_harness import Store

ENV = "/v1/apps/{app}/environments/default"


async def _call(store: Store, method: str, path: str, body: Any = None) -> dict[str, Any]:
    resp = await store.client.request(method, path, json=body, headers=store.auth(store.admin))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _versions(store: Store, app: int, name: str) -> list[dict[str, Any]]:
    data = await _call(store, "GET", ENV.format(app=app) + f"/secrets/{name}/versions")
    return list(data["versions"])


async def test_every_write_route_of_the_same_value_changes_nothing(store: Store) -> None:
    """1. A=v1 with a description; 2. the same value twice through each write route (twelve
    writes, more than the ten-version window): each answers changed=false, no version, no
    revision; 3. a new value, or only a new description, does change."""
    app = await store.app()
    env = ENV.format(app=app)
    first = await _call(
        store, "POST", env + "/secrets", {"name": "A", "value": "v1", "description": "d"}
    )
    assert first["changed"] is True and first["version"] == 1
    revision = await store.revision(app)
    versions = await _versions(store, app, "A")
    same_writes = [
        ("POST", env + "/secrets", {"name": "A", "value": "v1"}),
        ("POST", env + "/secrets", {"name": "A", "value": "v1", "description": "d"}),
        ("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "v1"}),
        ("PUT", env + "/secrets/A/value", {"value": "v1"}),
        ("POST", env + "/secrets/A/rollback", {"version": 1}),
        ("PATCH", env + "/secrets/A", {"description": "d"}),
    ]
    for _ in range(2):
        for method, path, body in same_writes:
            answer = await _call(store, method, path, body)
            assert answer["changed"] is False, (method, path)
            assert answer["version"] == 1 and answer["etag"] == first["etag"]
    assert await store.revision(app) == revision
    assert await _versions(store, app, "A") == versions  # v1 still holds its value

    changed = await _call(store, "POST", env + "/secrets", {"name": "A", "value": "v2"})
    assert changed["changed"] is True and changed["version"] == 2
    assert await store.revision(app) == revision + 1
    described = await _call(store, "PUT", env + "/secrets/A/value", {"value": "v2"})
    assert described["changed"] is False
    redescribed = await _call(
        store, "POST", env + "/secrets", {"name": "A", "value": "v2", "description": "new"}
    )
    assert redescribed["changed"] is True and redescribed["version"] == 2
    assert await store.revision(app) == revision + 2
    assert await store.reveal(app) == {"A": "v2"}


async def test_a_no_op_write_does_not_wake_a_held_long_poll(store: Store) -> None:
    """1. a watcher holds a long-poll on the current ETag; 2. a no-op write: the watcher is
    still held and answers 304 at its timeout; 3. control: a real write wakes the next one."""
    app = await store.app()
    await store.put(app, "A", "v1")
    h = store.auth(store.admin)
    path = ENV.format(app=app) + "/rendered?mode=full"
    etag = (await store.client.get(path, headers=h)).headers["ETag"]
    notifier = store.state.service.notifier

    async def hold(wait: float) -> int:
        resp = await store.client.get(f"{path}&wait={wait}", headers={**h, "If-None-Match": etag})
        return resp.status

    async def parked() -> None:
        while notifier.waiting() == 0:
            await asyncio.sleep(0.01)

    held = asyncio.create_task(hold(1.0))
    await asyncio.wait_for(parked(), 5)
    assert (await store.put(app, "A", "v1"))["changed"] is False
    await asyncio.sleep(0.1)  # a publish would resolve the waiter within a loop turn
    assert not held.done() and notifier.waiting() == 1
    assert await held == 304

    woken = asyncio.create_task(hold(30.0))
    await asyncio.wait_for(parked(), 5)
    assert (await store.put(app, "A", "v2"))["changed"] is True
    assert await asyncio.wait_for(woken, 10) == 200


CHILD = (
    "import os, sys, time\n"
    "open(sys.argv[1], 'a').write(f\"{os.getpid()} {os.environ['A']} {os.environ['B']}\\n\")\n"
    "time.sleep(3600)\n"
)


def test_cli_set_and_import_of_unchanged_values_print_unchanged_and_restart_nothing(
    tmp_path: Path,
) -> None:
    """1. a store with A, B and a `run --watch` child reading it; 2. `secrets set A` with the
    same value prints `unchanged A`; 3. re-importing the same file prints `unchanged` for each
    and imports nothing; 4. the child was never restarted; 5. a file with one new value
    imports just that one, and the child restarts once with it."""
    live = LiveStore.start(tmp_path, "noop")
    env = loader_env(LOADER_STORE_URL=live.url, LOADER_TOKEN=live.admin, LOADER_APP=str(live.app))
    dotenv = tmp_path / "app.env"
    dotenv.write_text("A=alpha\nB=beta\n")
    log, script = tmp_path / "child.log", tmp_path / "child.py"
    script.write_text(CHILD)
    runner = None
    try:
        out = run_loader("secrets", "import", str(dotenv), env=env)
        assert out.returncode == 0, out.stderr
        runner = start_runner(
            tmp_path / "runner.log",
            ["--watch", "--debounce", "0.05"],
            [sys.executable, str(script), str(log)],
            env=env,
        )
        wait_until(lambda: log.exists() and "alpha beta" in log.read_text(), what="child")

        same = run_loader("secrets", "set", "A", env=env, stdin=b"alpha\n")
        assert same.returncode == 0, same.stderr
        assert same.stdout.decode().splitlines() == ["unchanged A"]
        again = run_loader("secrets", "import", str(dotenv), env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.decode().splitlines() == ["unchanged A", "unchanged B"]
        as_json = run_loader("secrets", "import", str(dotenv), "--json", env=env)
        assert json.loads(as_json.stdout)["imported"] == []
        assert json.loads(as_json.stdout)["unchanged"] == ["A", "B"]

        dotenv.write_text("A=alpha\nB=gamma\n")
        one = run_loader("secrets", "import", str(dotenv), env=env)
        assert one.returncode == 0, one.stderr
        assert one.stdout.decode().splitlines()[0] == "unchanged A"
        assert "imported 1 secret(s)" in one.stdout.decode()
        wait_until(lambda: "alpha gamma" in log.read_text(), what="the restart")
        assert [line.split()[1:] for line in log.read_text().splitlines()] == [
            ["alpha", "beta"],
            ["alpha", "gamma"],
        ]  # one start, one restart: none for the unchanged writes
        client = live.client()
        versions = client.call("GET", ENV.format(app=live.app) + "/secrets/B/versions").json()
        client.close()
        assert [v["version"] for v in versions["versions"]] == [2, 1]
    finally:
        if runner is not None:
            runner.stop(signal.SIGTERM)
        live.proc.stop()
