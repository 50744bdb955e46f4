"""A long-poll held when its token is revoked, or its OAuth access token expires, answers 401
-- never the next value (issue 13, items 1 and 8).

"Revoke, then rotate" is the standard answer to a leaked token: the attacker's request, held
with ``wait=60``, must not be handed the rotated secret. Each scenario writes a canary value
after the revocation (or expiry) and searches the held response for it. Revocations come from
another connection (as the CLI's ``token revoke``, which writes the database directly), from
the real CLI against a store process, and through two PostgreSQL replicas.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from loader.store.backends import open_repository
from loader.store.models import AuditQuery, utcnow
from tests.pg import PostgresServer
from tests.procs import (
    LiveStore,
    create_token,
    init_store,
    loader_env,
    run_loader,
    start_store,
)
from tests.store_harness import Store

CANARY = "held-canary-rotated-5e1d"
HANG_GUARD = 30  # a held request's wait is 60 s: one still held at this point was not ended


def rendered(app: int, query: str = "mode=full") -> str:
    return f"/v1/apps/{app}/environments/default/rendered?{query}"


async def _revoke_elsewhere(store: Store, token_id: str) -> None:
    """Revoke on a connection of its own, as ``loader store token revoke`` does."""
    url = store.database_url or f"sqlite:///{store.data_dir / 'loader.db'}"
    repo = await open_repository(url)
    try:
        assert await repo.revoke_token(token_id, utcnow())
    finally:
        await repo.close()


async def _held(store: Store, token: str, app: int) -> asyncio.Task[tuple[int, str]]:
    """Start a request held on ``app``'s default environment; returns when it is held."""
    h = store.auth(token)
    etag = (await store.client.get(rendered(app), headers=h)).headers["ETag"]
    before = store.state.service.notifier.waiting()

    async def hold() -> tuple[int, str]:
        resp = await store.client.get(
            rendered(app, "mode=full&wait=60"), headers={**h, "If-None-Match": etag}
        )
        return resp.status, await resp.text()

    task = asyncio.create_task(hold())
    while store.state.service.notifier.waiting() <= before:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    return task


async def _refusals(store: Store, app: int, token_id: str) -> list[tuple[str, str]]:
    await store.state.audit.flush()
    events, _ = await store.state.service.repo.list_audit(AuditQuery(app_id=app, limit=1000))
    return [(e.action, e.outcome) for e in events if e.token_id == token_id]


async def test_revoke_then_rotate_hands_the_held_request_nothing(store: Store) -> None:
    """1. a reveal token holds a long-poll; 2. it is revoked elsewhere and the secret rotated
    at once (before any notice of the revocation could arrive); 3. the held request answers
    401 without the new value, audited as refused; no reveal is audited for it."""
    app = await store.app("rotate")
    await store.put(app, "A", "old")
    token = await store.token("secrets:reveal", app=app)
    held = await _held(store, token, app)
    await _revoke_elsewhere(store, token[:15])
    await store.put(app, "A", CANARY)
    status, body = await asyncio.wait_for(held, HANG_GUARD)
    assert status == 401, body
    assert CANARY not in body
    seen = await _refusals(store, app, token[:15])
    assert ("reveal", "unauthorized") in seen
    assert seen.count(("reveal", "ok")) == 1  # the first, unconditional read only


async def test_a_revocation_ends_the_tokens_held_requests_at_once(store: Store) -> None:
    """Several held requests of one token end on the revocation alone (no change, no timeout);
    another token's held request is untouched and still gets the next value."""
    app = await store.app("ended")
    await store.put(app, "A", "old")
    token = await store.token("secrets:reveal", app=app)
    other = await store.token("secrets:reveal", app=app)
    held = [await _held(store, token, app) for _ in range(3)]
    bystander = await _held(store, other, app)
    await _revoke_elsewhere(store, token[:15])
    results = await asyncio.wait_for(asyncio.gather(*held), HANG_GUARD)
    assert [status for status, _ in results] == [401, 401, 401]
    assert not bystander.done()
    await store.put(app, "A", CANARY)
    status, body = await asyncio.wait_for(bystander, HANG_GUARD)
    assert status == 200 and CANARY in body
    again = await store.client.get(rendered(app), headers=store.auth(token))
    assert again.status == 401


async def test_an_access_token_expiring_mid_wait_gets_401_not_the_next_value(
    make_store: Callable[..., AbstractAsyncContextManager[Store]],
) -> None:
    """1. an OAuth access token that lives 2 s holds a long-poll (wait=60); 2. after its expiry
    the secret is rotated; 3. the held request answered 401 and never saw the new value."""
    async with make_store(access_token_ttl=2) as store:
        app = await store.app("jwt")
        await store.put(app, "A", "old")
        client_id, secret = await store.oauth_client("secrets:reveal", app=app)
        access, ttl = await store.access_token(client_id, secret)
        issued = time.time()
        held = await _held(store, access, app)
        await asyncio.sleep(max(0.0, issued + ttl + 1.1 - time.time()))  # past exp
        await store.put(app, "A", CANARY)
        status, body = await asyncio.wait_for(held, HANG_GUARD)
        assert status == 401, body
        assert CANARY not in body
        assert ("reveal", "unauthorized") in await _refusals(store, app, client_id)


async def test_revoking_an_oauth_client_ends_its_access_tokens_held_requests(
    store: Store,
) -> None:
    app = await store.app("client")
    await store.put(app, "A", "old")
    client_id, secret = await store.oauth_client("secrets:reveal", app=app)
    access, _ = await store.access_token(client_id, secret)
    held = await _held(store, access, app)
    await _revoke_elsewhere(store, client_id)
    await store.put(app, "A", CANARY)
    status, body = await asyncio.wait_for(held, HANG_GUARD)
    assert status == 401 and CANARY not in body


# -- item 8: a cap on the long-polls one token holds -------------------------------------------


async def test_long_polls_per_token_are_capped_with_429(
    make_store: Callable[..., AbstractAsyncContextManager[Store]],
) -> None:
    async with make_store(max_long_polls_per_token=3) as store:
        app = await store.app("capped")
        await store.put(app, "A", "v1")
        token = await store.token("secrets:reveal", app=app)
        held = [await _held(store, token, app) for _ in range(3)]
        h = store.auth(token)
        etag = (await store.client.get(rendered(app), headers=h)).headers["ETag"]
        past = await asyncio.wait_for(
            store.client.get(
                rendered(app, "mode=full&wait=60"), headers={**h, "If-None-Match": etag}
            ),
            HANG_GUARD,
        )
        assert past.status == 429
        assert (await past.json())["code"] == "rate_limited"
        assert int(past.headers["Retry-After"]) >= 1
        # another token is not limited by this one's holds
        other = await store.token("secrets:reveal", app=app)
        bystander = await _held(store, other, app)
        # reads that do not wait are not limited either
        assert (await store.client.get(rendered(app), headers=h)).status == 200
        # once the held ones answer, the token may hold again
        await store.put(app, "A", "v2")
        assert [s for s, _ in await asyncio.gather(*held, bystander)] == [200] * 4
        again = await _held(store, token, app)
        await store.put(app, "A", "v3")
        assert (await asyncio.wait_for(again, HANG_GUARD))[0] == 200


# -- real processes: the CLI's revocation, and two PostgreSQL replicas ------------------------


async def _hold_http(
    session: aiohttp.ClientSession, url: str, token: str, app: int
) -> asyncio.Task[tuple[int, str]]:
    h = {"Authorization": f"Bearer {token}"}
    async with session.get(url + rendered(app), headers=h) as first:
        assert first.status == 200
        etag = first.headers["ETag"]

    async def hold() -> tuple[int, str]:
        async with session.get(
            url + rendered(app, "mode=full&wait=60"), headers={**h, "If-None-Match": etag}
        ) as resp:
            return resp.status, await resp.text()

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.3)  # the request reaches the store and parks
    assert not task.done(), task.result()
    return task


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_cli_revocation_ends_a_held_request_on_a_sqlite_store_process(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The CLI writes the SQLite file directly; the serving process notices on its own."""
    live = await asyncio.to_thread(LiveStore.start, tmp_path)
    try:
        await asyncio.to_thread(live.put, "A", "old")
        token = await asyncio.to_thread(create_token, live.data, "secrets:reveal", live.app)
        held = await _hold_http(session, live.url, token, live.app)
        out = await asyncio.to_thread(
            run_loader, "store", "token", "revoke", "--data-dir", str(live.data), token[:15]
        )
        assert out.returncode == 0, out.stderr
        status, body = await asyncio.wait_for(held, HANG_GUARD)
        assert status == 401
        await asyncio.to_thread(live.put, "A", CANARY)
        assert CANARY not in body
    finally:
        live.proc.stop()


@pytest.mark.postgres
async def test_cli_revocation_ends_held_requests_on_every_postgres_replica(
    tmp_path: Path, pg_server: PostgresServer, session: aiohttp.ClientSession
) -> None:
    """1. two replicas on one database; 2. a token holds a long-poll on each; 3. `loader store
    token revoke` (the CLI, on the database directly); 4. both held requests answer 401 at
    once; 5. the secret rotated through replica A is refused to the token on replica B."""
    url = pg_server.url(pg_server.create_database())
    env = loader_env(LOADER_DATABASE_URL=url)
    keys = tmp_path / "keys"
    admin = await asyncio.to_thread(init_store, keys, env)
    replicas = [await asyncio.to_thread(start_store, keys, env=env) for _ in range(2)]
    try:
        a, b = replicas
        h = {"Authorization": f"Bearer {admin}"}
        async with session.post(a.url + "/v1/apps", json={"name": "r"}, headers=h) as resp:
            app = int((await resp.json())["id"])
        async with session.post(
            a.url + f"/v1/apps/{app}/secrets", json={"name": "A", "value": "old"}, headers=h
        ) as resp:
            assert resp.status == 200
        created = await asyncio.to_thread(
            run_loader,
            "store",
            "token",
            "create",
            "--data-dir",
            str(keys),
            "--scopes",
            "secrets:reveal",
            "--app",
            str(app),
            "--json",
            env=env,
        )
        token = json.loads(created.stdout)["token"]
        held = [await _hold_http(session, r.url, token, app) for r in (a, b)]
        out = await asyncio.to_thread(
            run_loader, "store", "token", "revoke", "--data-dir", str(keys), token[:15], env=env
        )
        assert out.returncode == 0, out.stderr
        results = await asyncio.wait_for(asyncio.gather(*held), HANG_GUARD)
        assert [s for s, _ in results] == [401, 401]
        async with session.post(
            a.url + f"/v1/apps/{app}/secrets", json={"name": "A", "value": CANARY}, headers=h
        ) as resp:
            assert resp.status == 200
        async with session.get(
            b.url + rendered(app), headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 401
            assert CANARY not in await resp.text()
        assert all(CANARY not in body for _, body in results)
    finally:
        for r in replicas:
            r.stop()
