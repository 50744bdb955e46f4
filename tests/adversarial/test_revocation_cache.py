"""Token records are kept in memory (issue 21), and a revocation still bites on the very next
request: made by the store itself, by another connection on the SQLite file (as the CLI's
``token revoke``), by the real CLI against a store process, and on every PostgreSQL replica.

Each test first makes sure the token's record is kept (so a cache that missed the revocation
would answer 200), revokes, and asks again at once -- no sleep, no poll interval.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loader.server.authn import TokenAuthenticator
from loader.store.backends import open_repository
from loader.store.models import utcnow
from tests.pg import PostgresServer
from tests.procs import LiveStore, create_token, init_store, loader_env, run_loader, start_store
from tests.store_harness import Store, running_store

CANARY = "cache-canary-after-revoke-91c3"


def _kept(store: Store) -> int:
    auth = store.state.authenticate
    assert isinstance(auth, TokenAuthenticator)
    return len(auth.tokens)


def rendered(app: int, query: str = "mode=full") -> str:
    return f"/v1/apps/{app}/environments/default/rendered?{query}"


async def test_a_revocation_by_the_store_bites_on_the_next_request(store: Store) -> None:
    """Both backends: the revoking process drops the record as the revocation commits."""
    app = await store.app("own")
    await store.put(app, "A", "v1")
    tokens = [await store.token("secrets:reveal", app=app) for _ in range(3)]
    for token in tokens:
        for _ in range(2):
            assert (await store.client.get(rendered(app), headers=store.auth(token))).status == 200
    assert _kept(store) >= 3
    for i, token in enumerate(tokens):  # one after another; the others stay good meanwhile
        assert await store.state.service.repo.revoke_token(token[:15], utcnow())
        await store.put(app, "A", f"{CANARY}-{i}")
        resp = await store.client.get(rendered(app), headers=store.auth(token))
        assert resp.status == 401
        assert CANARY not in await resp.text()
        for other in tokens[i + 1 :]:
            ok = await store.client.get(rendered(app), headers=store.auth(other))
            assert ok.status == 200 and f"{CANARY}-{i}" in await ok.text()


async def test_a_revocation_on_another_sqlite_connection_bites_on_the_next_request(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """The CLI's path: another connection writes the file. The next request sees it through
    the data-version check -- not after the watcher's poll interval."""
    async with running_store(tmp_path / "s", aiohttp_client) as store:
        app = await store.app("elsewhere")
        await store.put(app, "A", "v1")
        token = await store.token("secrets:reveal", app=app)
        other = await store.token("secrets:reveal", app=app)
        for t in (token, other):
            assert (await store.client.get(rendered(app), headers=store.auth(t))).status == 200
        assert _kept(store) >= 2
        for round_ in range(3):  # successive revocations, the store writing in between
            repo = await open_repository(f"sqlite:///{store.data_dir / 'loader.db'}")
            try:
                assert await repo.revoke_token(token[:15], utcnow())
            finally:
                await repo.close()
            resp = await store.client.get(rendered(app), headers=store.auth(token))
            assert resp.status == 401, round_
            await store.put(app, "A", f"v{round_ + 2}")
            ok = await store.client.get(rendered(app), headers=store.auth(other))
            assert ok.status == 200
            token = await store.token("secrets:reveal", app=app)
            assert (await store.client.get(rendered(app), headers=store.auth(token))).status == 200


async def test_cli_revocation_bites_on_the_next_request_to_a_sqlite_store_process(
    tmp_path: Path,
) -> None:
    """`loader store token revoke` on the data directory of a running store: the request right
    after it is refused, and a request held across it answers 401 without the next value."""
    live = await asyncio.to_thread(LiveStore.start, tmp_path)
    try:
        await asyncio.to_thread(live.put, "A", "old")
        token = await asyncio.to_thread(create_token, live.data, "secrets:reveal", live.app)
        h = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # kept after the first
                async with session.get(live.url + rendered(live.app), headers=h) as resp:
                    assert resp.status == 200
                    etag = resp.headers["ETag"]

            async def hold() -> tuple[int, str]:
                async with session.get(
                    live.url + rendered(live.app, "mode=full&wait=60"),
                    headers={**h, "If-None-Match": etag},
                ) as resp:
                    return resp.status, await resp.text()

            held = asyncio.create_task(hold())
            await asyncio.sleep(0.3)  # reaches the store and parks
            assert not held.done()
            out = await asyncio.to_thread(
                run_loader, "store", "token", "revoke", "--data-dir", str(live.data), token[:15]
            )
            assert out.returncode == 0, out.stderr
            async with session.get(live.url + rendered(live.app), headers=h) as resp:
                assert resp.status == 401
            await asyncio.to_thread(live.put, "A", CANARY)
            status, body = await asyncio.wait_for(held, 30)
            assert status == 401 and CANARY not in body
    finally:
        live.proc.stop()


@pytest.mark.postgres
async def test_cli_revocation_bites_on_the_next_request_to_every_postgres_replica(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    """Two replicas, the token's record kept on both; `loader store token revoke` (the CLI, on
    the database); the next request to each replica is refused, a request held on A across it
    answers 401, and the other token keeps working on both."""
    url = pg_server.url(pg_server.create_database())
    env = loader_env(LOADER_DATABASE_URL=url)
    keys = tmp_path / "keys"
    admin = {"Authorization": f"Bearer {await asyncio.to_thread(init_store, keys, env)}"}
    replicas = [await asyncio.to_thread(start_store, keys, env=env) for _ in range(2)]
    try:
        a, b = replicas
        async with aiohttp.ClientSession() as session:
            async with session.post(a.url + "/v1/apps", json={"name": "r"}, headers=admin) as r:
                app = int((await r.json())["id"])
            body = {"name": "A", "value": "old"}
            async with session.post(
                a.url + f"/v1/apps/{app}/secrets", json=body, headers=admin
            ) as r:
                assert r.status == 200

            def token() -> str:
                made = run_loader(
                    "store", "token", "create", "--data-dir", str(keys), "--scopes",
                    "secrets:reveal", "--app", str(app), "--json", env=env,
                )  # fmt: skip
                assert made.returncode == 0, made.stderr
                return str(json.loads(made.stdout)["token"])

            doomed, other = [await asyncio.to_thread(token) for _ in range(2)]

            async def status(replica: str, t: str) -> int:
                h = {"Authorization": f"Bearer {t}"}
                async with session.get(replica + rendered(app), headers=h) as r:
                    return r.status

            for r_url in (a.url, b.url):
                for t in (doomed, other, doomed):
                    assert await status(r_url, t) == 200
            h = {"Authorization": f"Bearer {doomed}"}
            async with session.get(a.url + rendered(app), headers=h) as r:
                etag = r.headers["ETag"]

            async def hold() -> tuple[int, str]:
                async with session.get(
                    a.url + rendered(app, "mode=full&wait=60"),
                    headers={**h, "If-None-Match": etag},
                ) as resp:
                    return resp.status, await resp.text()

            held = asyncio.create_task(hold())
            await asyncio.sleep(0.3)
            assert not held.done()
            out = await asyncio.to_thread(
                run_loader, "store", "token", "revoke", "--data-dir", str(keys), doomed[:15],
                env=env,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert await status(b.url, doomed) == 401
            assert await status(a.url, doomed) == 401
            body = {"name": "A", "value": CANARY}
            async with session.post(
                b.url + f"/v1/apps/{app}/secrets", json=body, headers=admin
            ) as r:
                assert r.status == 200
            got, text = await asyncio.wait_for(held, 30)
            assert got == 401 and CANARY not in text
            assert await status(a.url, other) == 200
            assert await status(b.url, other) == 200
    finally:
        for replica in replicas:
            replica.stop()
