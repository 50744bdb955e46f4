"""Scope x route, app and environment binding, isolation.

The expected table is written out by hand (not derived from the route table), so a route whose
declared scope drifts from the contract fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loader.server.handlers import ROUTES
from tests.store_harness import Store

SINGLE_SCOPES = ["apps:read", "apps:write", "secrets:read", "secrets:write", "secrets:reveal"]

# operation -> scopes (besides *) that may call it
ALLOWED: dict[str, set[str]] = {
    "listApps": {"apps:read", "apps:write"},
    "createApp": {"apps:write"},
    "getApp": {"apps:read", "apps:write"},
    "deleteApp": {"apps:write"},
    "listEnvironments": {"apps:read", "apps:write"},
    "createEnvironment": {"apps:write"},
    "getEnvironment": {"apps:read", "apps:write"},
    "deleteEnvironment": {"apps:write"},
    "listSecrets": {"secrets:read", "secrets:write"},
    "upsertSecret": {"secrets:write"},
    "getSecret": {"secrets:read", "secrets:write"},
    "deleteSecret": {"secrets:write"},
    "listEnvironmentSecrets": {"secrets:read", "secrets:write"},
    "upsertEnvironmentSecret": {"secrets:write"},
    "getEnvironmentSecret": {"secrets:read", "secrets:write"},
    "updateEnvironmentSecret": {"secrets:write"},
    "deleteEnvironmentSecret": {"secrets:write"},
    "setSecretValue": {"secrets:write"},
    "listSecretVersions": {"secrets:read", "secrets:write"},
    "rollbackSecret": {"secrets:write"},
    "renderSecrets:preview": {"secrets:read", "secrets:write"},
    "renderSecrets:full": {"secrets:reveal"},
    "listAuditEvents": {"apps:write"},
    "listConsumers": {"apps:read", "apps:write"},
    "getRollout": {"apps:read", "apps:write"},
    "setRollout": {"apps:write"},
    "acquireRestartSlot": {"secrets:reveal"},
    "releaseRestartSlot": {"secrets:reveal"},
}

BODIES: dict[str, Any] = {
    "createApp": {"name": "new-app"},
    "createEnvironment": {"name": "staging"},
    "upsertSecret": {"name": "NEW", "value": "v"},
    "upsertEnvironmentSecret": {"name": "NEW", "value": "v"},
    "updateEnvironmentSecret": {"description": "d"},
    "setSecretValue": {"value": "v2"},
    "rollbackSecret": {"version": 1},
    "setRollout": {"max_unavailable": "10%"},
    "acquireRestartSlot": {"revision": 1},
}
RUNNER = {"X-Loader-Consumer": "id=r1;kind=runner;seq=1"}


def cases() -> list[tuple[str, str, str, str | None]]:
    out = []
    for route in ROUTES:
        if route.scope is None:
            continue
        if route.operation_id == "renderSecrets":
            out.append(("renderSecrets:preview", route.method, route.path, "mode=preview"))
            out.append(("renderSecrets:full", route.method, route.path, "mode=full"))
        else:
            out.append((route.operation_id, route.method, route.path, None))
    return out


def test_every_authenticated_route_has_a_row() -> None:
    assert {c[0] for c in cases()} == set(ALLOWED)


def _path(template: str, app: int, env: str = "prod") -> str:
    return template.replace("{appId}", str(app)).replace("{env}", env).replace("{secretName}", "A")


@pytest.mark.parametrize("scope", [*SINGLE_SCOPES, "*"])
async def test_scope_table(store: Store, scope: str) -> None:
    for key, method, template, query in cases():
        app = await store.app(f"{key}-{scope}".replace(":", "-").replace("*", "star"))
        await store.env(app, "prod")
        await store.put(app, "A", "v1", env="prod")
        await store.put(app, "A", "v1", env="default")
        token = await store.token(scope)
        path = _path(template, app) + (f"?{query}" if query else "")
        resp = await store.client.request(
            method,
            path,
            json=BODIES.get(key.split(":")[0]),
            headers={**store.auth(token), **RUNNER},
        )
        allowed = scope == "*" or scope in ALLOWED[key]
        if allowed:
            assert resp.status < 400, (key, scope, resp.status, await resp.text())
        else:
            assert resp.status == 403, (key, scope, resp.status)
            assert (await resp.json())["code"] == "insufficient_scope"


async def test_app_binding_isolates_apps(store: Store) -> None:
    one, two = await store.app("one"), await store.app("two")
    await store.put(one, "A", "one-value")
    await store.put(two, "A", "two-value")
    bound = await store.token("*", app=one)
    h = store.auth(bound)
    ok = await store.client.get(
        f"/v1/apps/{one}/environments/default/rendered?mode=full", headers=h
    )
    assert (await ok.json())["secrets"] == {"A": "one-value"}
    for path in (
        f"/v1/apps/{two}/secrets",
        f"/v1/apps/{two}/secrets/A",
        f"/v1/apps/{two}/environments/default/rendered?mode=full",
        f"/v1/apps/{two}",
        f"/v1/apps/{two}/audit",
        "/v1/apps/999999/secrets",  # same answer whether or not the app exists
    ):
        resp = await store.client.get(path, headers=h)
        assert resp.status == 403, path
        assert "two-value" not in await resp.text()
    resp = await store.client.post(
        f"/v1/apps/{two}/secrets", json={"name": "A", "value": "x"}, headers=h
    )
    assert resp.status == 403
    assert await store.reveal(two) == {"A": "two-value"}
    listed = await (await store.client.get("/v1/apps", headers=h)).json()
    assert [a["id"] for a in listed["apps"]] == [one]
    created = await store.client.post("/v1/apps", json={"name": "three"}, headers=h)
    assert created.status == 403


async def test_environment_binding(store: Store) -> None:
    app = await store.app()
    await store.env(app, "prod")
    await store.put(app, "A", "prod-value", env="prod")
    await store.put(app, "A", "default-value")
    token = await store.token("secrets:reveal", "secrets:write", app=app, envs=("prod",))
    h = store.auth(token)
    ok = await store.client.get(f"/v1/apps/{app}/environments/prod/rendered?mode=full", headers=h)
    assert (await ok.json())["secrets"] == {"A": "prod-value"}
    for method, path in (
        ("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full"),
        ("GET", f"/v1/apps/{app}/secrets"),  # the Spice routes act on default
        ("POST", f"/v1/apps/{app}/environments/default/secrets"),
        ("DELETE", f"/v1/apps/{app}/secrets/A"),
    ):
        resp = await store.client.request(method, path, json={"name": "A", "value": "x"}, headers=h)
        assert resp.status == 403, path
    assert await store.reveal(app) == {"A": "default-value"}


async def test_environments_isolate_values(store: Store) -> None:
    app = await store.app()
    await store.env(app, "staging")
    await store.put(app, "A", "default-a")
    await store.put(app, "A", "staging-a", env="staging")
    await store.put(app, "ONLY_STAGING", "s", env="staging")
    assert await store.reveal(app) == {"A": "default-a"}
    assert await store.reveal(app, "staging") == {"A": "staging-a", "ONLY_STAGING": "s"}


async def test_expired_and_revoked_tokens_are_401(store: Store) -> None:
    app = await store.app()
    expired = await store.token("*", ttl=-1)
    resp = await store.client.get(f"/v1/apps/{app}/secrets", headers=store.auth(expired))
    assert resp.status == 401
    live = await store.token("*")
    assert (
        await store.client.get(f"/v1/apps/{app}/secrets", headers=store.auth(live))
    ).status == 200
    token_id = live[: len("lt_") + 12]
    from loader.store.models import utcnow

    assert await store.state.service.repo.revoke_token(token_id, utcnow())
    resp = await store.client.get(f"/v1/apps/{app}/secrets", headers=store.auth(live))
    assert resp.status == 401


@pytest.mark.parametrize(
    "header", ["Basic abc", "Bearer", "Bearer ", "bearer lt_x", "Token lt_000000000000_x"]
)
async def test_malformed_authorization_is_401(store: Store, header: str) -> None:
    resp = await store.client.get("/v1/apps", headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("credential", [b"\xae", b"lt_0123456789ab_\xff\xfe", b"a.\xc3.b"])
async def test_undecodable_bytes_in_the_credential_are_401(store: Store, credential: bytes) -> None:
    """Found by the fuzzer: bytes that are not UTF-8 arrive as lone surrogates (500 before)."""
    server = store.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /v1/apps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + credential + b"\r\n\r\n"
    )
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401", status_line


async def test_public_routes_need_no_token(store: Store) -> None:
    health = await store.client.get("/v1/health")
    assert await health.json() == {"status": "ok"}
    doc = await (await store.client.get("/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
