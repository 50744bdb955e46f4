"""Readiness, 503 instead of 500, and metrics, against real failures: PostgreSQL stopped and
frozen (its own server, so the shared one is left alone), the SQLite file deleted under the
store, a wrong master key file, and a full disk (a small tmpfs)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loader.crypto import Keyring
from loader.store.keyfile import write_key_file
from tests import tools
from tests.pg import PostgresServer, find_bin
from tests.store_harness import Store, running_store

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def ready(store: Store) -> tuple[int, dict[str, Any]]:
    store.state.readiness._last = None  # type: ignore[union-attr]  # no 1 s cache in tests
    resp = await store.client.get("/v1/ready")
    return resp.status, dict(await resp.json())


async def write(store: Store, app: int, name: str, value: str = "v") -> Any:
    return await store.client.post(
        f"/v1/apps/{app}/environments/default/secrets",
        json={"name": name, "value": value},
        headers=store.auth(store.admin),
    )


async def assert_503(resp: Any, code: str) -> None:
    """Never 500: 503, Retry-After, a JSON body naming the reason."""
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["code"] == code, body
    assert body["retry_after"] >= 1


async def test_ready_and_metrics_when_all_is_well(store: Store) -> None:
    status, body = await ready(store)
    assert status == 200 and body["status"] == "ready"
    assert set(body["checks"]) == {"data_file", "disk", "database", "master_key"}
    assert set(body["checks"].values()) == {"ok"}
    app = await store.app()
    await store.put(app, "A", "1")
    await store.reveal(app)
    metrics = await (await store.client.get("/metrics")).text()
    assert (
        'loader_store_requests_total{method="GET",route="/v1/apps/{appId}/environments/{env}/'
        'rendered",status="200"} 1.0'
    ) in metrics
    assert "loader_store_watchers 0.0" in metrics
    assert "loader_store_audit_queue" in metrics
    assert "loader_store_database_up 1.0" in metrics
    assert "/v1/apps/1" not in metrics  # templates only, never a raw path


# -- PostgreSQL stopped and frozen ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server these tests may stop and freeze."""
    tools.require(find_bin(), "PostgreSQL (Debian package postgresql)")
    server = PostgresServer()
    server.start()
    try:
        server.psql("CREATE DATABASE loader_template")
        yield server
    finally:
        server.thaw(server.processes())
        server.stop()


@pytest.fixture
async def pg_store(
    tmp_path: Path, aiohttp_client: Any, own_pg: PostgresServer
) -> AsyncIterator[Store]:
    async with running_store(
        tmp_path / "store",
        aiohttp_client,
        pg=own_pg,
        db_timeout=1,
        db_acquire_timeout=1,
        ready_timeout=1,
    ) as store:
        store.state.readiness.window = 0.5  # type: ignore[union-attr]
        yield store


@pytest.mark.postgres
async def test_postgres_down_is_503_with_one_log_line_then_recovers(
    pg_store: Store, own_pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """1. serving; 2. PostgreSQL crash-stopped: /v1/ready 503, writes and reads 503 with
    Retry-After (never 500), one log line for the outage and no traceback; metrics count it;
    3. PostgreSQL back: ready 200, the same write goes through, one line says so."""
    store = pg_store
    app = await store.app()
    await store.put(app, "A", "before")
    assert (await ready(store))[0] == 200

    own_pg.halt()
    try:
        with caplog.at_level(logging.INFO, logger="loader"):
            for i in range(20):
                await assert_503(await write(store, app, f"W{i}"), "database_unavailable")
            listing = await store.client.get(
                f"/v1/apps/{app}/secrets", headers=store.auth(store.admin)
            )
            await assert_503(listing, "database_unavailable")
            status, body = await ready(store)
            assert status == 503 and body["code"] == "database_unavailable"
            assert body["checks"]["database"] == "database_unavailable"
        down = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert len(down) == 1
        assert not [r for r in caplog.records if r.exc_info], "no traceback per request"
        metrics = await (await store.client.get("/metrics")).text()
        assert 'loader_store_database_errors_total{code="database_unavailable"}' in metrics
        assert "loader_store_database_up 0.0" in metrics
        assert 'status="500"' not in metrics
    finally:
        own_pg.resume()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="loader"):
        # The pool's old connections are gone: the first calls may still fail, with 503.
        await eventually_written(store, app, "A", "after", "database_unavailable")
    assert [r for r in caplog.records if "available again" in r.getMessage()]
    await asyncio.sleep(0.6)  # past the failure window
    assert (await ready(store))[0] == 200
    # Reveals wait for the audit records of the outage to be stored (the queue retries).
    await eventually_revealed(store, app, {"A": "after"})


async def eventually_written(store: Store, app: int, name: str, value: str, *codes: str) -> None:
    """Retry a write until it is acknowledged; meanwhile only 503s with one of ``codes``."""
    for _ in range(100):
        resp = await write(store, app, name, value)
        if resp.status == 200:
            return
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["code"] in codes
        await asyncio.sleep(0.05)
    raise AssertionError("the write never went through")


async def eventually_revealed(store: Store, app: int, expected: dict[str, str]) -> None:
    for _ in range(100):
        resp = await store.client.get(
            f"/v1/apps/{app}/environments/default/rendered?mode=full",
            headers=store.auth(store.admin),
        )
        if resp.status == 200:
            assert (await resp.json())["secrets"] == expected
            return
        await assert_503(resp, "audit_unavailable")
        await asyncio.sleep(0.05)
    raise AssertionError("reveals never came back")


@pytest.mark.postgres
async def test_frozen_postgres_times_out_as_503_instead_of_hanging(
    pg_store: Store, own_pg: PostgresServer
) -> None:
    """1. serving; 2. every PostgreSQL process stopped (SIGSTOP): writes answer 503
    database_timeout after the statement or acquire timeout, ready answers 503 within its own;
    3. thawed: ready and writes 200 again."""
    store = pg_store
    app = await store.app()
    await store.put(app, "A", "before")
    frozen = own_pg.freeze()
    try:
        for i in range(3):
            resp = await asyncio.wait_for(write(store, app, f"F{i}"), 30)
            await assert_503(resp, "database_timeout")
        status, body = await asyncio.wait_for(ready(store), 30)
        assert status == 503 and body["code"] == "database_timeout"
    finally:
        own_pg.thaw(frozen)
    await eventually_written(store, app, "A", "thawed", "database_timeout", "database_unavailable")
    await asyncio.sleep(0.6)
    assert (await ready(store))[0] == 200


@pytest.mark.postgres
async def test_postgres_connections_say_who_they_are(
    pg_store: Store, own_pg: PostgresServer
) -> None:
    await pg_store.app()
    names = {
        row[0]
        for row in await pg_store.sql(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
    }
    assert {"loader-store", "loader-listener"} <= names


# -- SQLite: the file deleted under the store ----------------------------------------------------


async def test_deleted_database_file_is_not_ready_and_refuses_writes(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """1. serving; 2. loader.db unlinked (SQLite would go on writing into the deleted file): ready
    503 database_file_missing, writes 503 (nothing acknowledged into a file that is gone);
    3. the file put back (a hard link kept aside): ready and writes 200, nothing was lost."""
    async with running_store(tmp_path / "store", aiohttp_client) as store:
        app = await store.app()
        await store.put(app, "A", "kept")
        db = store.data_dir / "loader.db"
        aside = tmp_path / "aside.db"
        os.link(db, aside)
        db.unlink()
        status, body = await ready(store)
        assert status == 503 and body["code"] == "database_file_missing"
        assert body["checks"]["data_file"] == "database_file_missing"
        await assert_503(await write(store, app, "B"), "database_file_missing")
        for _ in range(10):  # reads: from connections to the opened file, or 503; never 500
            listing = await store.client.get(
                f"/v1/apps/{app}/secrets", headers=store.auth(store.admin)
            )
            if listing.status != 200:
                await assert_503(listing, "database_file_missing")
        assert not db.exists()  # no connection created an empty database at the path

        os.link(aside, db)
        assert (await write(store, app, "B", "after")).status == 200
        store.state.readiness.window = 0  # type: ignore[union-attr]
        # Ready again once the audit writer's retry (its backoff runs a few seconds at most)
        # has found the file back: wait for it, bounded, instead of racing it.
        status = 0
        for _ in range(100):
            status = (await ready(store))[0]
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        assert await store.reveal(app) == {"A": "kept", "B": "after"}


async def test_replaced_database_file_is_not_ready(tmp_path: Path, aiohttp_client: Any) -> None:
    async with running_store(tmp_path / "store", aiohttp_client) as store:
        app = await store.app()
        db = store.data_dir / "loader.db"
        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)
        status, body = await ready(store)
        assert status == 503 and body["code"] == "database_file_replaced"
        await assert_503(await write(store, app, "B"), "database_file_replaced")


# -- the wrong master key -----------------------------------------------------------------------


async def test_wrong_master_key_file_is_not_ready_and_refuses_writes(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """1. serving with a key file; 2. the file replaced by another key: ready 503
    master_key_mismatch, writes 503 (a wrong key would wrap new data keys nothing could open),
    a retry with the same Idempotency-Key is not answered from the refusal;
    3. the right key back: ready 200 and the retried write goes through."""
    async with running_store(tmp_path / "store", aiohttp_client, key_file=True) as store:
        app = await store.app()
        await store.put(app, "A", "1")
        key_path = store.data_dir / "master.key"
        right = key_path.read_bytes()
        write_key_file(key_path, Keyring.generate())
        status, body = await ready(store)
        assert status == 503 and body["code"] == "master_key_mismatch"
        headers = {**store.auth(store.admin), "Idempotency-Key": "retry-1"}
        url = f"/v1/apps/{app}/environments/default/secrets"
        refused = await store.client.post(url, json={"name": "B", "value": "2"}, headers=headers)
        await assert_503(refused, "master_key_mismatch")
        created = await store.client.post(
            "/v1/apps", json={"name": "other"}, headers=store.auth(store.admin)
        )
        await assert_503(created, "master_key_mismatch")

        tmp = key_path.with_name("master.key.new")
        tmp.write_bytes(right)
        tmp.chmod(0o600)
        tmp.replace(key_path)
        await asyncio.sleep(1.05)  # the write gate re-checks the key file once a second
        retried = await store.client.post(url, json={"name": "B", "value": "2"}, headers=headers)
        assert retried.status == 200 and "Idempotent-Replayed" not in retried.headers
        assert (await ready(store))[0] == 200
        assert await store.reveal(app) == {"A": "1", "B": "2"}


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 16 MiB tmpfs of our own (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="loader-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while os.write(fd, b"\0" * size) == size:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


async def test_full_disk_is_503_refuses_reveals_unaudited_and_recovers(
    small_disk: Path, aiohttp_client: Any
) -> None:
    """1. a SQLite store on a 16 MiB tmpfs; 2. the disk filled: ready 503 disk_full, writes 503
    disk_full (never 500), and a reveal whose audit record cannot be stored is refused 503;
    3. the filler removed: writes, reveals and ready 200 again."""
    async with running_store(small_disk / "store", aiohttp_client) as store:
        store.state.readiness.window = 0.2  # type: ignore[union-attr]
        app = await store.app()
        await store.put(app, "A", "1")
        assert (await ready(store))[0] == 200
        filler = fill(small_disk)
        status, body = await ready(store)
        assert status == 503 and body["code"] == "disk_full"
        big = "x" * 60_000
        statuses = []
        for i in range(40):  # until the write-ahead log needs a page the disk does not have
            resp = await write(store, app, f"BIG{i}", big)
            statuses.append(resp.status)
            if resp.status != 200:
                await assert_503(resp, "disk_full")
                break
        assert 503 in statuses and 500 not in statuses, statuses
        await store.client.get(
            f"/v1/apps/{app}/environments/default/rendered?mode=full",
            headers=store.auth(store.admin),
        )
        # That reveal's record is queued; its batch fails to store; the next reveal is refused.
        for _ in range(50):
            if store.state.audit.store_failure is not None:
                break
            await asyncio.sleep(0.05)
        assert store.state.audit.store_failure is not None
        reveal = await store.client.get(
            f"/v1/apps/{app}/environments/default/rendered?mode=full",
            headers=store.auth(store.admin),
        )
        await assert_503(reveal, "audit_unavailable")

        filler.unlink()
        await eventually_written(store, app, "C", "after", "disk_full")
        await eventually_revealed(store, app, {"A": "1", "C": "after"})
        await asyncio.sleep(0.3)
        assert (await ready(store))[0] == 200
