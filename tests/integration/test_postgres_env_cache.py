"""Environment records kept in memory on each PostgreSQL replica (issue 21), dropped by the
``loader_changes`` notification of every change -- on the committing replica at commit.

Two in-process replicas on one real PostgreSQL database. Each test counts the reads of the
environment row (``sql.GET_ENVIRONMENT``) a replica makes, so that it fails on a store that
reads the row per request as well as on one that keeps a record it should have dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from loader.store import sql
from loader.store.postgres import PostgresRepository
from tests.pg import PostgresServer
from tests.store_harness import Store, running_replica, running_store

pytestmark = pytest.mark.postgres


def environment_reads(store: Store) -> list[tuple[Any, ...]]:
    """The reads of an environment row by (app, name) ``store`` makes from now on."""
    repo: Any = store.state.service.repo
    reads: list[tuple[Any, ...]] = []
    original = repo._fetchkey

    async def counting(convert: Any, statement: str, *args: Any) -> Any:
        if statement == sql.GET_ENVIRONMENT:
            reads.append(args)
        return await original(convert, statement, *args)

    repo._fetchkey = counting
    return reads


async def until(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    for _ in range(1000):
        done = check()
        if done if isinstance(done, bool) else await done:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def listening(*stores: Store) -> None:
    for store in stores:
        repo = store.state.service.repo

        async def up(repo: Any = repo) -> bool:
            return await repo.revocation_epoch() is not None

        await until(up, "the LISTEN connection")


def rendered(app: int, env: str = "default") -> str:
    return f"/v1/apps/{app}/environments/{env}/rendered?mode=full"


async def get(store: Store, path: str, etag: str | None = None) -> tuple[int, Any, Any]:
    headers = store.auth(store.admin)
    if etag is not None:
        headers["If-None-Match"] = etag
    resp = await store.client.get(path, headers=headers)
    body = await resp.json() if resp.status in (200, 404) else None
    return resp.status, resp.headers, body


def env_id_of(etag: str) -> int:
    return int(etag.strip('"').split(".")[0][1:])  # "r<env id>.<revision>.<variant>"


async def held(store: Store, path: str, etag: str) -> tuple[int, Any, Any]:
    return await get(store, path.replace("mode=full", "mode=full&wait=30"), etag)


async def parked(store: Store, count: int) -> None:
    await until(lambda: store.state.service.notifier.waiting() >= count, "watchers parked")


async def warm(
    writer: Store, reader: Store, name: str
) -> tuple[int, str, list[tuple[Any, ...]], str]:
    """An app written through ``writer``, its environment's record kept by ``reader`` (one read
    of the row for three requests): (app, rendered path, ``reader``'s row reads, ETag)."""
    app = await writer.app(name)
    await writer.put(app, "A", "v0")
    reads = environment_reads(reader)
    path = rendered(app)
    for _ in range(3):
        status, headers, _ = await get(reader, path)
        assert status == 200
    assert len(reads) == 1
    return app, path, reads, headers["ETag"]


async def test_repeated_reads_on_one_replica_read_the_environment_row_once(
    tmp_path: Path, aiohttp_client: Any, pg_server: PostgresServer
) -> None:
    async with running_store(tmp_path / "a", aiohttp_client, pg=pg_server) as a:
        await listening(a)
        app = await a.app("hot")
        await a.put(app, "A", "v1")
        reads = environment_reads(a)
        for _ in range(10):
            status, _, body = await get(a, rendered(app))
            assert status == 200 and body["secrets"] == {"A": "v1"}
            resp = await a.client.get(f"/v1/apps/{app}/secrets/A", headers=a.auth(a.admin))
            assert resp.status == 200
        assert len(reads) == 1


async def test_twenty_writes_on_one_replica_each_reach_the_other(
    tmp_path: Path, aiohttp_client: Any, pg_server: PostgresServer
) -> None:
    """Watchers held on B across each of 20 writes on A; once they wake (A's notification has
    reached B), B's plain reads carry the new revision and never 304 the old ETag -- with one
    read of the environment row per change, not per request."""
    async with (
        running_store(tmp_path / "a", aiohttp_client, pg=pg_server) as a,
        running_replica(a, aiohttp_client) as b,
    ):
        await listening(a, b)
        app = await a.app("fan")
        await a.put(app, "A", "v0")
        reads = environment_reads(b)
        path = rendered(app)
        status, headers, _ = await get(b, path)
        etag, first = headers["ETag"], int(headers["X-Loader-Revision"])
        requests = 1
        for i in range(1, 21):
            watchers = [asyncio.create_task(held(b, path, etag)) for _ in range(3)]
            await parked(b, 3)
            await a.put(app, "A", f"v{i}")
            for status, headers, body in await asyncio.gather(*watchers):
                assert status == 200 and body["secrets"] == {"A": f"v{i}"}
                assert int(headers["X-Loader-Revision"]) == first + i
            for _ in range(3):
                status, headers, body = await get(b, path, etag)
                assert status == 200, f"write {i}: the old ETag answered {status}"
                assert int(headers["X-Loader-Revision"]) == first + i
                assert body["secrets"] == {"A": f"v{i}"}
            etag = headers["ETag"]
            requests += 6
        assert len(reads) <= 21 < requests  # one per change at most


async def test_deleted_and_recreated_environments_and_apps_on_the_other_replica(
    tmp_path: Path, aiohttp_client: Any, pg_server: PostgresServer
) -> None:
    async with (
        running_store(tmp_path / "a", aiohttp_client, pg=pg_server) as a,
        running_replica(a, aiohttp_client) as b,
    ):
        await listening(a, b)
        app = await a.app("gone")
        admin = a.auth(a.admin)
        reads = environment_reads(b)
        path = rendered(app, "staging")
        ids: list[int] = []
        for round_ in range(3):  # deleted and re-created under the same name, three times
            await a.env(app, "staging")
            await a.put(app, "A", f"round-{round_}", env="staging")
            seen = len(reads)
            for _ in range(3):
                status, headers, body = await get(b, path)
                assert status == 200 and body["secrets"] == {"A": f"round-{round_}"}
            assert len(reads) == seen + 1  # kept
            etag = headers["ETag"]
            ids.append(env_id_of(etag))
            assert len(set(ids)) == len(ids)  # the new environment, never an old one
            watcher = asyncio.create_task(held(b, path, etag))
            await parked(b, 1)
            resp = await a.client.delete(f"/v1/apps/{app}/environments/staging", headers=admin)
            assert resp.status == 204
            assert (await watcher)[0] == 404  # B heard the delete
            assert (await get(b, path, etag))[0] == 404
            resp = await b.client.get(f"/v1/apps/{app}/environments/staging", headers=admin)
            assert resp.status == 404
        # The app's delete drops every environment of it.
        await a.env(app, "staging")
        await a.put(app, "A", "last", env="staging")
        etags = {}
        for env in ("default", "staging"):
            etags[env] = (await get(b, rendered(app, env)))[1]["ETag"]
        seen = len(reads)
        assert (await get(b, rendered(app, "staging"), etags["staging"]))[0] == 304
        assert len(reads) == seen
        watchers = [asyncio.create_task(held(b, rendered(app, e), t)) for e, t in etags.items()]
        await parked(b, 2)
        assert (await a.client.delete(f"/v1/apps/{app}", headers=admin)).status == 204
        assert [w[0] for w in await asyncio.gather(*watchers)] == [404, 404]
        for env, etag in etags.items():
            assert (await get(b, rendered(app, env), etag))[0] == 404


async def test_while_the_listen_connection_is_down_every_request_reads_the_database(
    tmp_path: Path,
    aiohttp_client: Any,
    pg_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B's LISTEN connection is terminated by PostgreSQL and held down (its reconnect waits on
    a gate): B reads the row per request and serves every write made meanwhile; once it
    listens again it forgets what it kept before, and keeps again."""
    async with running_store(tmp_path / "a", aiohttp_client, pg=pg_server) as a:
        await listening(a)
        gate = asyncio.Event()
        gate.set()
        listener_pids: list[int] = []
        connect = asyncpg.connect

        async def gated(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()
            conn = await connect(*args, **kwargs)
            listener_pids.append(conn.get_server_pid())
            return conn

        monkeypatch.setattr(asyncpg, "connect", gated)  # only B's LISTEN connects from now on
        async with running_replica(a, aiohttp_client) as b:
            await listening(b)
            assert len(listener_pids) == 1
            app, path, reads, etag = await warm(a, b, "outage")
            before = etag

            gate.clear()
            killed = await asyncio.to_thread(
                pg_server.psql, f"SELECT pg_terminate_backend({listener_pids[0]})"
            )
            assert killed == "t"
            repo = b.state.service.repo

            async def down() -> bool:
                return await repo.revocation_epoch() is None

            await until(down, "B to notice its LISTEN connection is gone")
            for i in range(5):  # writes during the outage: each seen at once, read per request
                await a.put(app, "A", f"during-{i}")
                seen = len(reads)
                for _ in range(2):
                    status, headers, body = await get(b, path, etag)
                    assert status == 200 and body["secrets"] == {"A": f"during-{i}"}
                assert len(reads) == seen + 2
                etag = headers["ETag"]
            # The last write of the outage reached no LISTEN on B; B must not serve the record
            # it kept before the outage once it listens again.
            await a.put(app, "A", "unheard")
            gate.set()
            await listening(b)
            assert len(listener_pids) == 2
            seen = len(reads)
            for tag in (before, etag, before):
                status, headers, body = await get(b, path, tag)
                assert status == 200 and body["secrets"] == {"A": "unheard"}
            assert len(reads) == seen + 1  # kept again
            etag = headers["ETag"]
            watcher = asyncio.create_task(held(b, path, etag))
            await parked(b, 1)
            await a.put(app, "A", "after")
            assert (await watcher)[2]["secrets"] == {"A": "after"}
            status, _, body = await get(b, path, etag)
            assert status == 200 and body["secrets"] == {"A": "after"}


async def test_the_committing_replica_sees_its_own_write_without_its_notification(
    tmp_path: Path,
    aiohttp_client: Any,
    pg_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A's own change notifications are held back (not delivered to A): each write still shows
    on A's next request, since A drops the record as the write commits."""
    held_back: list[tuple[Any, tuple[Any, ...]]] = []
    holding = False
    on_notify = PostgresRepository._on_notify

    def delayed(self: Any, *args: Any) -> None:
        if holding:
            held_back.append((self, args))
        else:
            on_notify(self, *args)

    monkeypatch.setattr(PostgresRepository, "_on_notify", delayed)
    async with running_store(tmp_path / "a", aiohttp_client, pg=pg_server) as a:
        await listening(a)
        app, path, reads, etag = await warm(a, a, "own")
        holding = True
        for i in range(1, 6):
            await a.put(app, "A", f"v{i}")
            for _ in range(3):
                status, headers, body = await get(a, path, etag)
                assert status == 200 and body["secrets"] == {"A": f"v{i}"}
            etag = headers["ETag"]
        await until(lambda: len(held_back) == 5, "A's own notifications")
        assert len(reads) == 1 + 5  # dropped at each commit, read once after it
        holding = False
        for repo, args in held_back:
            on_notify(repo, *args)
        status, headers, body = await get(a, path, etag)
        assert status == 304
