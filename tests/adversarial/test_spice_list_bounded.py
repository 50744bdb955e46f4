"""The Spice list route (`GET /v1/apps/{appId}/secrets`) keeps the Spice shape for any number of
secrets but bounds its work (issue 13, item 12): the first page reaches the client before the
next is read, and however many clients list at once, one page is read and encoded at a time --
the rest wait their turn instead of all holding the event loop.

The repository is the real one, wrapped to count and hold its list reads (a gate), so the
ordering is observed, not timed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loader.store.models import SecretMeta
from tests.store_harness import Store

COUNT = 1100
HANG_GUARD = 20


class GatedLists:
    """Wraps ``repo.list_secrets``: calls past the first ``free`` wait for ``open``."""

    def __init__(self, store: Store, free: int) -> None:
        self.repo = store.state.service.repo
        self.inner = self.repo.list_secrets
        self.free = free
        self.calls = 0
        self.active = 0
        self.most = 0
        self.opened = asyncio.Event()

    async def __call__(self, env_id: int, offset: int, limit: int) -> Any:
        self.calls += 1
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            if self.calls > self.free:
                await self.opened.wait()
            return await self.inner(env_id, offset, limit)
        finally:
            self.active -= 1

    def __enter__(self) -> GatedLists:
        self.repo.list_secrets = self  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        self.repo.list_secrets = self.inner  # type: ignore[method-assign]


async def _fill(store: Store) -> int:
    app = await store.app("many")
    env = await store.state.service.environment(app)
    names = [f"S{i:05d}" for i in range(COUNT)]
    for start in range(0, COUNT, 100):
        await asyncio.gather(
            *(store.state.service.write(env, n, value="v") for n in names[start : start + 100])
        )
    return app


def _check_shape(body: dict[str, Any]) -> None:
    assert list(body) == ["secrets"]
    secrets = body["secrets"]
    assert [s["name"] for s in secrets] == [f"S{i:05d}" for i in range(COUNT)]
    keys = set(SecretMeta.__dataclass_fields__) - {"env_id", "modified_revision"}
    for s in secrets:
        assert s["value"] == "**********" and s["environment"] == "default"
        assert keys - {"id", "name", "description", "version", "created_at", "updated_at"} == set()
        assert {"id", "name", "value", "created_at", "updated_at", "environment"} <= set(s)


async def test_a_long_list_is_streamed_a_page_at_a_time(store: Store) -> None:
    """1. 1,100 secrets; 2. the second page read is held; 3. the client already has the first
    page (status, headers and the start of the body); 4. released, the whole body is the Spice
    shape with every secret, masked."""
    app = await _fill(store)
    h = store.auth(store.admin)
    with GatedLists(store, free=1) as gate:
        resp = await asyncio.wait_for(store.client.get(f"/v1/apps/{app}/secrets", headers=h), 10)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        start = await asyncio.wait_for(resp.content.read(100), HANG_GUARD)
        assert start.startswith(b'{"secrets":[{"id":')
        assert not gate.opened.is_set() and gate.calls == 2  # the second read is the one held
        gate.opened.set()
        rest = await asyncio.wait_for(resp.content.read(), HANG_GUARD)
    _check_shape(json.loads(start + rest))


async def test_concurrent_lists_read_one_page_at_a_time(store: Store) -> None:
    app = await _fill(store)
    h = store.auth(store.admin)
    with GatedLists(store, free=0) as gate:

        async def listing() -> dict[str, Any]:
            resp = await store.client.get(f"/v1/apps/{app}/secrets", headers=h)
            assert resp.status == 200
            return dict(json.loads(await resp.read()))

        lists = [asyncio.create_task(listing()) for _ in range(6)]
        while gate.calls < 1:
            await asyncio.sleep(0.01)
        for _ in range(20):  # let every request run as far as it can
            await asyncio.sleep(0.01)
        assert gate.calls == 1 and gate.most == 1
        health = await asyncio.wait_for(store.client.get("/v1/health"), HANG_GUARD)
        assert health.status == 200
        gate.opened.set()
        bodies = await asyncio.wait_for(asyncio.gather(*lists), HANG_GUARD * 3)
        assert gate.most == 1
    for body in bodies:
        _check_shape(body)


async def test_a_short_list_is_one_ordinary_response(store: Store) -> None:
    app = await store.app("few")
    await store.put(app, "A", "v")
    resp = await store.client.get(f"/v1/apps/{app}/secrets", headers=store.auth(store.admin))
    assert resp.status == 200 and resp.headers.get("Content-Length") is not None
    assert [s["name"] for s in (await resp.json())["secrets"]] == ["A"]


async def test_a_list_that_fails_mid_way_is_cut_off_not_passed_as_whole(store: Store) -> None:
    """The status went out with the first page: when a later page cannot be read, the
    connection ends without the closing chunk, so the client sees an error, never a short
    list that parses."""
    from loader.errors import DatabaseUnavailableError

    app = await _fill(store)
    repo = store.state.service.repo
    inner = repo.list_secrets
    calls = 0

    async def failing(env_id: int, offset: int, limit: int) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise DatabaseUnavailableError("the database went away", "database_unavailable")
        return await inner(env_id, offset, limit)

    repo.list_secrets = failing  # type: ignore[method-assign]
    try:
        resp = await store.client.get(f"/v1/apps/{app}/secrets", headers=store.auth(store.admin))
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(resp.read(), HANG_GUARD)
    finally:
        repo.list_secrets = inner  # type: ignore[method-assign]
