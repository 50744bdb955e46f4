"""Every route x every kind of caller -> the expected status, generated from the route table:
a route added without a rule here fails ``test_every_route_has_a_rule``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from loader.server.handlers import ROUTES
from tests.store_harness import Store

SCOPES = ["apps:read", "apps:write", "secrets:read", "secrets:write", "secrets:reveal"]


@dataclass(frozen=True)
class Rule:
    scopes: frozenset[str]  # single scopes (besides *) allowed
    app_bound: bool = True  # a token bound to another app is refused
    env_bound: bool = False  # a token bound to another environment is refused
    query: str = ""
    body: Any = None
    ok: int = 200
    headers: tuple[tuple[str, str], ...] = ()


READ_SECRETS = frozenset({"secrets:read", "secrets:write"})
RUNNER = ("X-Loader-Consumer", "id=r1;kind=runner;seq=1")
RULES: dict[str, Rule] = {
    "health": Rule(frozenset(SCOPES), app_bound=False),
    "openapi": Rule(frozenset(SCOPES), app_bound=False),
    "ready": Rule(frozenset(SCOPES), app_bound=False),
    "metrics": Rule(frozenset(SCOPES), app_bound=False),
    "issueAccessToken": Rule(frozenset(), app_bound=False),  # public: credentials in the body
    "listApps": Rule(frozenset({"apps:read", "apps:write"}), app_bound=False),
    "createApp": Rule(frozenset({"apps:write"}), app_bound=False, body={"name": "n"}, ok=201),
    "getApp": Rule(frozenset({"apps:read", "apps:write"})),
    "deleteApp": Rule(frozenset({"apps:write"}), env_bound=True, ok=204),
    "listEnvironments": Rule(frozenset({"apps:read", "apps:write"})),
    "createEnvironment": Rule(frozenset({"apps:write"}), body={"name": "staging"}, ok=201),
    "getEnvironment": Rule(frozenset({"apps:read", "apps:write"}), env_bound=True),
    "deleteEnvironment": Rule(frozenset({"apps:write"}), env_bound=True, ok=204),
    "listSecrets": Rule(READ_SECRETS, env_bound=True),
    "upsertSecret": Rule(
        frozenset({"secrets:write"}), env_bound=True, body={"name": "A", "value": "x"}
    ),
    "getSecret": Rule(READ_SECRETS, env_bound=True),
    "deleteSecret": Rule(frozenset({"secrets:write"}), env_bound=True, ok=204),
    "listEnvironmentSecrets": Rule(READ_SECRETS, env_bound=True),
    "upsertEnvironmentSecret": Rule(
        frozenset({"secrets:write"}), env_bound=True, body={"name": "A", "value": "x"}
    ),
    "getEnvironmentSecret": Rule(READ_SECRETS, env_bound=True),
    "updateEnvironmentSecret": Rule(
        frozenset({"secrets:write"}), env_bound=True, body={"description": "d"}
    ),
    "deleteEnvironmentSecret": Rule(frozenset({"secrets:write"}), env_bound=True, ok=204),
    "setSecretValue": Rule(frozenset({"secrets:write"}), env_bound=True, body={"value": "v"}),
    "listSecretVersions": Rule(READ_SECRETS, env_bound=True),
    "rollbackSecret": Rule(frozenset({"secrets:write"}), env_bound=True, body={"version": 1}),
    "renderSecrets": Rule(frozenset({"secrets:reveal"}), env_bound=True, query="mode=full"),
    "renderSecrets?preview": Rule(READ_SECRETS, env_bound=True, query="mode=preview"),
    "listAuditEvents": Rule(frozenset({"apps:write"})),
    "listConsumers": Rule(frozenset({"apps:read", "apps:write"}), env_bound=True),
    "getRollout": Rule(frozenset({"apps:read", "apps:write"}), env_bound=True),
    "setRollout": Rule(frozenset({"apps:write"}), env_bound=True, body={"max_unavailable": 2}),
    "acquireRestartSlot": Rule(
        frozenset({"secrets:reveal"}), env_bound=True, body={"revision": 1}, headers=(RUNNER,)
    ),
    "releaseRestartSlot": Rule(frozenset({"secrets:reveal"}), env_bound=True, headers=(RUNNER,)),
}

CALLERS = ["none", "bad", "expired", "revoked", *SCOPES, "*", "other-app", "other-env"]


def cases() -> list[tuple[str, str, str, Rule]]:
    out = []
    for route in ROUTES:
        rule = RULES.get(route.operation_id)
        if rule is None:
            continue
        out.append((route.operation_id, route.method, route.path, rule))
        preview = RULES.get(route.operation_id + "?preview")
        if preview is not None:
            out.append((route.operation_id + "?preview", route.method, route.path, preview))
    return out


def test_every_route_has_a_rule() -> None:
    assert sorted(r.operation_id for r in ROUTES if r.operation_id not in RULES) == []


async def _token(store: Store, caller: str, app: int) -> str | None:
    if caller == "none":
        return None
    if caller == "bad":
        return "lt_0123456789ab_" + "x" * 43
    if caller == "expired":
        return await store.token("*", ttl=-1)
    if caller == "revoked":
        token = await store.token("*")
        from loader.store.models import utcnow

        await store.state.service.repo.revoke_token(token[:15], utcnow())
        return token
    if caller == "other-app":
        return await store.token("*", app=app + 100000)
    if caller == "other-env":
        return await store.token("*", app=app, envs=("staging",))
    return await store.token(caller)


def expected(caller: str, op: str, rule: Rule) -> int:
    public = op in ("health", "ready", "metrics", "openapi", "issueAccessToken")
    if public:
        return rule.ok if op != "issueAccessToken" else 400
    if caller in ("none", "bad", "expired", "revoked"):
        return 401
    if caller in SCOPES and caller not in rule.scopes:
        return 403
    if caller == "other-app" and rule.app_bound:
        return 403
    if caller == "other-env" and rule.env_bound:
        return 403
    if op == "createApp" and caller in ("other-app", "other-env"):
        return 403  # a token bound to an app cannot create apps
    return rule.ok


@pytest.mark.parametrize("caller", CALLERS)
async def test_access_matrix(store: Store, caller: str) -> None:
    results = []
    for n, (op, method, template, rule) in enumerate(cases()):
        app = await store.app(f"m-{caller.replace(':', '-').replace('*', 'all')}-{n}")
        await store.env(app, "prod")
        await store.put(app, "A", "v", env="prod")
        await store.put(app, "A", "v")
        token = await _token(store, caller, app)
        path = (
            template.replace("{appId}", str(app))
            .replace("{env}", "prod")
            .replace("{secretName}", "A")
        )
        if rule.query:
            path += "?" + rule.query
        headers = {**(store.auth(token) if token else {}), **dict(rule.headers)}
        body = rule.body
        if op == "issueAccessToken":
            body = {"grant_type": "password", "client_id": "x", "client_secret": "y"}
        if op == "createApp":
            body = {"name": f"created-{caller.replace(':', '-').replace('*', 'all')}-{n}"}
        resp = await store.client.request(method, path, json=body, headers=headers)
        want = expected(caller, op, rule)
        results.append((op, resp.status, want))
        if resp.status >= 400:
            err = await resp.json()
            assert set(err) >= {"error", "code"}
            if want == 401:
                assert err["code"] == "unauthorized"
            if want == 403:
                assert err["code"] == "insufficient_scope"
    assert [r for r in results if r[1] != r[2]] == []
