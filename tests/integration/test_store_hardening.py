"""Store hardening in-process: version history, audit log, rate limits, OAuth access tokens."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loader.server.limits import RateLimiter
from loader.store.models import utcnow
from tests.store_harness import Store

CANARY = "hardening-canary-0c7e-value"


def path(app: int, rest: str = "", env: str = "default") -> str:
    return f"/v1/apps/{app}/environments/{env}/secrets{rest}"


async def test_concurrent_writers_leave_a_consistent_history(store: Store) -> None:
    app = await store.app()
    writer = await store.token("secrets:write", app=app)
    h = store.auth(writer)

    async def write(i: int) -> dict[str, Any]:
        resp = await store.client.post(path(app), json={"name": "A", "value": f"w{i}"}, headers=h)
        assert resp.status == 200
        return dict(await resp.json())

    results = await asyncio.gather(*(write(i) for i in range(16)))
    versions = (
        await (
            await store.client.get(path(app, "/A/versions"), headers=store.auth(store.admin))
        ).json()
    )["versions"]
    assert [v["version"] for v in versions] == list(range(16, 0, -1))
    assert {v["actor"] for v in versions} == {writer[:15]}
    assert [v["has_value"] for v in versions] == [True] * 10 + [False] * 6
    last = max(results, key=lambda r: r["version"])
    assert (await store.reveal(app))["A"] == f"w{results.index(last)}"
    for v in versions:
        assert "w1" not in json.dumps(v)


# -- audit ---------------------------------------------------------------------------------


async def audit(store: Store, app: int, query: str = "") -> list[dict[str, Any]]:
    resp = await store.client.get(f"/v1/apps/{app}/audit?{query}", headers=store.auth(store.admin))
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["events"])


async def test_audit_records_every_action_and_refusal_never_a_value_or_token(
    tmp_path: Path, make_store: Any
) -> None:
    sink = tmp_path / "audit.jsonl"
    async with make_store(audit_file=sink) as store:
        app = await store.app("audited")
        h = store.auth(store.admin)
        c = store.client
        await c.post(path(app), json={"name": "A", "value": CANARY}, headers=h)
        await c.post(path(app), json={"name": "A", "value": CANARY + "2"}, headers=h)
        await c.post(path(app), json={"name": "A", "value": CANARY + "2"}, headers=h)
        await c.post(path(app), json={"name": "B"}, headers=h)
        await c.put(path(app, "/B/value"), json={"value": CANARY + "b"}, headers=h)
        await c.patch(path(app, "/B"), json={"description": "d"}, headers=h)
        await c.post(path(app, "/A/rollback"), json={"version": 1}, headers=h)
        await c.get(f"/v1/apps/{app}/environments/default/rendered?mode=full", headers=h)
        await c.delete(path(app, "/B"), headers=h)
        bad = "lt_000000000000_" + "x" * 43
        assert (await c.get(path(app), headers=store.auth(bad))).status == 401
        reader = await store.token("secrets:read", app=app)
        resp = await c.post(
            path(app), json={"name": "A", "value": CANARY}, headers=store.auth(reader)
        )
        assert resp.status == 403
        events = await audit(store, app)
        actions = [(e["action"], e["outcome"], e["name"]) for e in reversed(events)]
        assert ("upsert_secret", "ok", "A") in actions
        assert ("upsert_secret", "unchanged", "A") in actions  # the same value again
        assert ("declare_secret", "ok", "B") in actions
        assert ("set_value", "ok", "B") in actions
        assert ("update_secret", "ok", "B") in actions
        assert ("rollback_secret", "ok", "A") in actions
        assert ("delete_secret", "ok", "B") in actions
        assert ("upsert_secret", "forbidden", None) in actions
        reveal = next(e for e in events if e["action"] == "reveal")
        assert reveal["names"] == ["A", "B"] and reveal["environment"] == "default"
        assert all(e["client"] for e in events)
        assert {e["token_id"] for e in events if e["outcome"] == "ok"} == {store.admin[:15]}
        refused = [e for e in events if e["outcome"] == "forbidden"]
        assert refused and refused[0]["token_id"] == reader[:15]
        only_a = await audit(store, app, "name=A")
        assert only_a and all("A" in e["names"] for e in only_a)
        reveals = await audit(store, app, "action=reveal")
        assert reveals and all(e["action"] == "reveal" for e in reveals)
        future = await audit(store, app, "since=2999-01-01T00:00:00Z")
        assert future == []
        page = await (await c.get(f"/v1/apps/{app}/audit?page_size=2&page=2", headers=h)).json()
        assert len(page["events"]) == 2 and page["total"] == len(events)
        denied = await c.get(f"/v1/apps/{app}/audit", headers=store.auth(reader))
        assert denied.status == 403
        await store.state.audit.flush()
        rows = await store.sql("SELECT * FROM audit_events")
    text = json.dumps(rows, default=str) + sink.read_text()
    assert len(sink.read_text().splitlines()) == len(rows)
    for secret in (CANARY, store.admin, reader, bad, store.admin[15:]):
        assert secret not in text


async def test_unauthenticated_refusals_are_audited(store: Store) -> None:
    app = await store.app()
    resp = await store.client.get(
        f"/v1/apps/{app}/secrets", headers=store.auth("lt_000000000000_zz")
    )
    assert resp.status == 401
    await store.state.audit.flush()
    from loader.store.models import AuditQuery

    events, _ = await store.state.service.repo.list_audit(AuditQuery(app_id=app))
    assert [(e.action, e.outcome, e.token_id) for e in events if e.outcome != "ok"] == [
        ("list_secrets", "unauthorized", None)
    ]


# -- rate limits ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limited(make_store: Any) -> AsyncIterator[tuple[Store, Clock]]:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, reveal_rate=1.0, clock=clock)
    async with make_store(limiter=limiter) as store:
        yield store, clock


async def test_rate_limit_429_headers_and_recovery(limited: tuple[Store, Clock]) -> None:
    store, clock = limited
    app = await store.state.service.create_app("limited")
    token = await store.token("*")
    h = store.auth(token)
    statuses = []
    for _ in range(4):
        resp = await store.client.get(f"/v1/apps/{app.id}/secrets", headers=h)
        statuses.append(resp.status)
        last = resp
    assert statuses == [200, 200, 200, 429]
    body = await last.json()
    assert body["code"] == "rate_limited" and body["retry_after"] == 1
    assert last.headers["Retry-After"] == "1"
    assert last.headers["RateLimit-Limit"] == "3"
    assert last.headers["RateLimit-Remaining"] == "0"
    assert int(last.headers["RateLimit-Reset"]) >= 1
    ok = await store.client.get("/v1/apps", headers=store.auth(store.admin))
    assert ok.status == 200  # another token has its own bucket
    clock.now += 0.6
    assert (await store.client.get(f"/v1/apps/{app.id}/secrets", headers=h)).status == 200
    assert (await store.client.get(f"/v1/apps/{app.id}/secrets", headers=h)).status == 429
    clock.now += 10
    for _ in range(3):
        assert (await store.client.get(f"/v1/apps/{app.id}/secrets", headers=h)).status == 200


async def test_rate_limit_budgets_are_separate_and_long_polls_count_once(
    limited: tuple[Store, Clock],
) -> None:
    store, clock = limited
    app = await store.state.service.create_app("budgets")
    token = await store.token("*")
    h = store.auth(token)
    rendered = f"/v1/apps/{app.id}/environments/default/rendered?mode=full"
    etag = (await store.client.get(rendered, headers=h)).headers["ETag"]
    held = await store.client.get(rendered + "&wait=1", headers={**h, "If-None-Match": etag})
    assert held.status == 304  # held a second, counted once
    assert (await store.client.get(rendered, headers=h)).status == 200
    assert (await store.client.get(rendered, headers=h)).status == 429  # reveals: 3 in a burst
    for _ in range(3):  # the read and write budgets are untouched
        assert (await store.client.get(f"/v1/apps/{app.id}/secrets", headers=h)).status == 200
    for i in range(3):
        resp = await store.client.post(
            f"/v1/apps/{app.id}/secrets", json={"name": f"W{i}", "value": "v"}, headers=h
        )
        assert resp.status == 200
    assert (
        await store.client.post(
            f"/v1/apps/{app.id}/secrets", json={"name": "W9", "value": "v"}, headers=h
        )
    ).status == 429
    clock.now += 5
    assert (await store.client.get(rendered, headers=h)).status == 200


# -- OAuth access tokens -------------------------------------------------------------------


async def client(store: Store, scopes: frozenset[str], app: int | None = None) -> tuple[str, str]:
    return await store.oauth_client(*scopes, app=app)


async def test_oauth_client_credentials_flow(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", CANARY)
    client_id, secret = await client(store, frozenset({"secrets:reveal", "secrets:read"}), app)
    resp = await store.client.post(
        "/oauth/token",
        json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 900
    access = body["access_token"]
    rendered = f"/v1/apps/{app}/environments/default/rendered?mode=full"
    got = await store.client.get(rendered, headers=store.auth(access))
    assert (await got.json())["secrets"] == {"A": CANARY}
    other = await store.app("other")
    assert (
        await store.client.get(f"/v1/apps/{other}/secrets", headers=store.auth(access))
    ).status == 403
    form = await store.client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "secrets:read",
        },
    )
    narrow = (await form.json())["access_token"]
    assert (await store.client.get(rendered, headers=store.auth(narrow))).status == 403
    too_much = await store.client.post(
        "/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "secrets:write",
        },
    )
    assert too_much.status == 400
    for bad in (
        {"client_secret": secret + "x"},
        {"client_id": "lc_000000000000"},
        {"grant_type": "password"},
    ):
        req = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            **bad,
        }
        resp = await store.client.post("/oauth/token", json=req)
        assert resp.status in (400, 401)
        assert secret not in await resp.text()


async def test_oauth_tampered_expired_and_revoked_tokens_are_401(make_store: Any) -> None:
    # 3 s, not 1: under a loaded CI a 1 s token sometimes expired before its first use.
    async with make_store(access_token_ttl=3, jwt_leeway=0) as store:
        app = await store.app()
        client_id, secret = await client(store, frozenset({"secrets:read"}))
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}

        async def issue() -> str:
            return str(
                (await (await store.client.post("/oauth/token", json=form)).json())["access_token"]
            )

        listing = f"/v1/apps/{app}/secrets"
        token = await issue()
        assert (await store.client.get(listing, headers=store.auth(token))).status == 200
        head, payload, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["scope"] = "*"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        for bad in (
            f"{head}.{forged}.{sig}",
            f"{head}.{payload}.{sig[:-2]}AA",
            token + "x",
            f"{none_alg}.{payload}.",
        ):
            resp = await store.client.get(listing, headers=store.auth(bad))
            assert resp.status == 401, bad
        await asyncio.sleep(3.1)
        expired = await store.client.get(listing, headers=store.auth(token))
        assert expired.status == 401 and "expired" in (await expired.json())["error"]
        fresh = await issue()
        assert (await store.client.get(listing, headers=store.auth(fresh))).status == 200
        assert await store.state.service.repo.revoke_token(client_id, utcnow())
        assert (await store.client.get(listing, headers=store.auth(fresh))).status == 401
        assert (await store.client.post("/oauth/token", json=form)).status == 401


async def test_identical_reveals_are_stored_as_one_counted_record(store: Store) -> None:
    """A burst of the same reveal (a write waking many watchers of one token) is one audit row
    with a count; another token's reveals are their own row; nothing is lost."""
    app = await store.app()
    await store.put(app, "A", CANARY)
    first, second = (
        await store.token("secrets:reveal", app=app),
        await store.token("secrets:reveal", app=app),
    )
    await store.state.audit.flush()
    store.state.audit.flush_interval = 30.0  # what is recorded below waits for one batch...
    await asyncio.sleep(0.3)  # ...once a wait begun with the old interval (50 ms) is over

    async def reveal(token: str) -> None:
        resp = await store.client.get(
            f"/v1/apps/{app}/environments/default/rendered?mode=full", headers=store.auth(token)
        )
        assert resp.status == 200

    await asyncio.gather(*(reveal(first) for _ in range(40)), *(reveal(second) for _ in range(3)))
    events = await audit(store, app, "action=reveal")
    totals: dict[str, int] = {}
    for e in events:
        totals[e["token_id"]] = totals.get(e["token_id"], 0) + e["count"]
    assert totals == {first[:15]: 40, second[:15]: 3}  # every reveal counted, none lost
    rows = await store.sql("SELECT count FROM audit_events WHERE action = 'reveal'")
    assert sum(r[0] for r in rows) == 43
    # One row per token (two, should a stall of the test split the batch), not one per reveal.
    assert len(rows) <= 4, rows
