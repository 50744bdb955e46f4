"""An environment-bound token acts only inside its environments: routes that act on a whole app
refuse it, and what it can read of an app is filtered to its environments (issue 13, item 3).

Every route on an app that does not name an environment is classified here, from the route
table: a route added without a classification fails ``test_every_app_wide_route_is_classified``.
"""

from __future__ import annotations

from typing import Any

from loader.server.handlers import ROUTES
from tests.store_harness import Store

# operationId -> how an environment-bound token is held inside its environments there
APP_WIDE = {
    "getApp": "reads the app's name and id only",
    "deleteApp": "refused: deleting the app deletes every environment",
    "listEnvironments": "filtered to the token's environments",
    "createEnvironment": "only an environment the token is bound to",
    "listAuditEvents": "filtered to events in the token's environments",
}


def test_every_app_wide_route_is_classified() -> None:
    app_wide = {
        r.operation_id
        for r in ROUTES
        if "{appId}" in r.path and not r.environment_scoped and r.scope is not None
    }
    assert app_wide == set(APP_WIDE)
    assert {r.operation_id for r in ROUTES if r.whole_app} == {"deleteApp", "createApp"}


async def _audit(store: Store, app: int, token: str) -> Any:
    resp = await store.client.get(f"/v1/apps/{app}/audit?page_size=1000", headers=store.auth(token))
    return resp.status, (await resp.json())


async def test_environment_bound_token_cannot_delete_the_app_or_read_other_environments_audit(
    store: Store,
) -> None:
    """1. an app with prod and staging, a secret in each; 2. a token with apps:write bound to the
    app and prod; 3. DELETE of staging and of the app are refused (403, audited), staging's
    secret is still there; 4. the token's audit view holds prod's events only; 5. an
    unbound token deletes the app."""
    app = await store.app("bound")
    await store.env(app, "prod")
    await store.env(app, "staging")
    await store.put(app, "P", "prod-value", env="prod")
    await store.put(app, "S", "staging-value", env="staging")
    bound = await store.token("apps:write", "secrets:write", app=app, envs=("prod",))
    h = store.auth(bound)

    staging = await store.client.delete(f"/v1/apps/{app}/environments/staging", headers=h)
    assert staging.status == 403
    whole = await store.client.delete(f"/v1/apps/{app}", headers=h)
    assert whole.status == 403
    assert (await whole.json())["code"] == "insufficient_scope"
    assert (await store.reveal(app, "staging")) == {"S": "staging-value"}
    created = await store.client.post("/v1/apps", json={"name": "new"}, headers=h)
    assert created.status == 403

    # writes in prod are fine, and show in its audit view
    resp = await store.client.post(
        f"/v1/apps/{app}/environments/prod/secrets", json={"name": "P2", "value": "x"}, headers=h
    )
    assert resp.status == 200
    status, body = await _audit(store, app, bound)
    assert status == 200
    seen = {(e["action"], e["environment"]) for e in body["events"]}
    assert ("upsert_secret", "prod") in seen
    assert {e["environment"] for e in body["events"]} == {"prod"}
    assert body["total"] == len(body["events"])

    # the admin sees staging's events and the refused app deletion
    status, full = await _audit(store, app, store.admin)
    assert status == 200
    assert ("upsert_secret", "staging") in {(e["action"], e["environment"]) for e in full["events"]}
    refused = [e for e in full["events"] if e["action"] == "delete_app"]
    assert refused and refused[0]["outcome"] == "forbidden"
    assert refused[0]["token_id"] == bound[:15]

    # an app-bound token without an environment binding acts on its whole app
    app_admin = await store.token("apps:write", app=app)
    gone = await store.client.delete(f"/v1/apps/{app}", headers=store.auth(app_admin))
    assert gone.status == 204


async def test_environment_bound_oauth_access_token_is_held_the_same_way(store: Store) -> None:
    app = await store.app("bound-jwt")
    await store.env(app, "prod")
    client_id, secret = await store.oauth_client("apps:write", app=app, envs=("prod",))
    access, _ = await store.access_token(client_id, secret)
    assert (await store.client.delete(f"/v1/apps/{app}", headers=store.auth(access))).status == 403
    status, body = await _audit(store, app, access)
    assert status == 200
    assert all(e["environment"] == "prod" for e in body["events"])
