"""Idempotency-Key on writes: a retry gets the first answer and writes nothing again."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.store_harness import Store


def url(app: int) -> str:
    return f"/v1/apps/{app}/environments/default/secrets"


async def versions(store: Store, app: int, name: str) -> int:
    resp = await store.client.get(f"{url(app)}/{name}/versions", headers=store.auth(store.admin))
    return len((await resp.json())["versions"])


async def post(store: Store, app: int, body: dict[str, Any], key: str | None, token: str) -> Any:
    headers = store.auth(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await store.client.post(url(app), json=body, headers=headers)


async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer(store: Store) -> None:
    """1. a write with a key; 2. the same write again, twice: the same status, ETag and body,
    marked replayed, and still one version; 3. the key with another body: 422, nothing written;
    4. another key: a new version; 5. without a key: writes as always."""
    app = await store.app()
    first = await post(store, app, {"name": "A", "value": "1"}, "key-1", store.admin)
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    body = await first.json()
    for _ in range(2):
        again = await post(store, app, {"name": "A", "value": "1"}, "key-1", store.admin)
        assert again.status == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["ETag"] == first.headers["ETag"]
        assert await again.json() == body
    assert await versions(store, app, "A") == 1

    other = await post(store, app, {"name": "A", "value": "2"}, "key-1", store.admin)
    assert other.status == 422
    assert (await other.json())["code"] == "idempotency_key_reused"
    assert await store.reveal(app) == {"A": "1"}

    await post(store, app, {"name": "A", "value": "2"}, "key-2", store.admin)
    assert await versions(store, app, "A") == 2
    await store.put(app, "A", "3")
    assert await versions(store, app, "A") == 3
    metrics = await (await store.client.get("/metrics")).text()
    assert "loader_store_idempotent_replays_total 2.0" in metrics  # the two replays of step 2


async def test_concurrent_retries_wait_for_the_first(store: Store) -> None:
    app = await store.app()
    answers = await asyncio.gather(
        *(post(store, app, {"name": "C", "value": "x"}, "same", store.admin) for _ in range(8))
    )
    assert {a.status for a in answers} == {200}
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == 7
    assert len({a.headers["ETag"] for a in answers}) == 1
    assert await versions(store, app, "C") == 1


async def test_keys_belong_to_their_token_and_refusals_replay_too(store: Store) -> None:
    app = await store.app()
    other = await store.token("secrets:write", "secrets:read")
    a = await post(store, app, {"name": "T", "value": "1"}, "shared", store.admin)
    b = await post(store, app, {"name": "T", "value": "1"}, "shared", other)
    assert a.status == b.status == 200
    assert "Idempotent-Replayed" not in b.headers  # another token's key is its own
    # A refusal is an answer: If-Match that does not match, replayed as 412.
    headers = {**store.auth(store.admin), "Idempotency-Key": "cas", "If-Match": '"nope"'}
    for _ in range(2):
        resp = await store.client.post(url(app), json={"name": "T", "value": "2"}, headers=headers)
        assert resp.status == 412
    assert resp.headers["Idempotent-Replayed"] == "true"


async def test_a_bad_key_is_refused(store: Store) -> None:
    app = await store.app()
    for bad in ("has space", "x" * 256):
        resp = await post(store, app, {"name": "B", "value": "1"}, bad, store.admin)
        assert resp.status == 400
        assert "Idempotency-Key" in (await resp.json())["error"]
    assert await store.reveal(app) == {}
