"""The Spice-compatible routes, every route x status the vendor's OpenAPI document lists.

Bodies are validated against the vendor's own schemas (``tests/data/seeds``), values are masked.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.data import SEED
from tests.store_harness import Store

MASK = "**********"


def seed_schema(name: str) -> dict[str, Any]:
    doc = json.loads(SEED.read_text())
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


def assert_secret(body: Any) -> None:
    jsonschema.validate(body, seed_schema("Secret"))
    assert body["value"] == MASK
    for key in ("id", "name", "value", "created_at", "updated_at"):
        assert key in body


def seed_statuses() -> set[tuple[str, str, int]]:
    doc = json.loads(SEED.read_text())
    return {
        (method.upper(), path, int(status))
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for status in op["responses"]
    }


LIST = "/v1/apps/{app}/secrets"
ONE = "/v1/apps/{app}/secrets/{name}"


async def call(
    store: Store,
    method: str,
    template: str,
    token: str | None,
    status: int,
    body: Any = None,
    **fmt: Any,
) -> Any:
    path = template.format(**fmt)
    headers = store.auth(token) if token is not None else {}
    resp = await store.client.request(method, path, json=body, headers=headers)
    text = await resp.text()
    assert resp.status == status, text
    if status >= 400:
        err = json.loads(text)
        assert set(err) >= {"error", "code"}
        return err
    return json.loads(text) if text else None


async def test_spice_secrets_happy_path(store: Store) -> None:
    app = await store.app("spice")
    admin = store.admin
    created = await call(
        store, "POST", LIST, admin, 200, {"name": "DATABASE_URL", "value": "pg://x"}, app=app
    )
    assert_secret(created)
    updated = await call(
        store, "POST", LIST, admin, 200, {"name": "DATABASE_URL", "value": "pg://y"}, app=app
    )
    assert updated["id"] == created["id"] and updated["created_at"] == created["created_at"]
    await call(store, "POST", LIST, admin, 200, {"name": "API_KEY", "value": "k"}, app=app)
    listing = await call(store, "GET", LIST, admin, 200, app=app)
    jsonschema.validate(
        listing,
        {
            "type": "object",
            "properties": {"secrets": {"type": "array", "items": seed_schema("Secret")}},
        },
    )
    assert [s["name"] for s in listing["secrets"]] == ["API_KEY", "DATABASE_URL"]
    assert all(s["value"] == MASK for s in listing["secrets"])
    one = await call(store, "GET", ONE, admin, 200, app=app, name="API_KEY")
    assert_secret(one)
    assert await call(store, "DELETE", ONE, admin, 204, app=app, name="API_KEY") is None
    await call(store, "GET", ONE, admin, 404, app=app, name="API_KEY")
    assert await store.reveal(app) == {"DATABASE_URL": "pg://y"}


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "1.5", "99999999999999999999"])
async def test_spice_invalid_app_id_is_400(store: Store, bad: str) -> None:
    for method, template, body in [
        ("GET", LIST, None),
        ("POST", LIST, {"name": "A", "value": "v"}),
        ("GET", ONE, None),
        ("DELETE", ONE, None),
    ]:
        err = await call(store, method, template, store.admin, 400, body, app=bad, name="A")
        assert err["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "A"},
        {"value": "v"},
        {"name": "A", "value": 5},
        {"name": 5, "value": "v"},
        {"name": "A", "value": "v", "extra": 1},
        ["A", "v"],
        "x",
    ],
)
async def test_spice_post_bad_body_is_400(store: Store, body: Any) -> None:
    app = await store.app()
    err = await call(store, "POST", LIST, store.admin, 400, body, app=app)
    assert err["code"] == "invalid_request"
    assert (await call(store, "GET", LIST, store.admin, 200, app=app))["secrets"] == []


@pytest.mark.parametrize("name", ["123-invalid", "my-secret", "api.key", "", "A" * 257])
async def test_spice_bad_name_is_400_invalid_secret_name(store: Store, name: str) -> None:
    app = await store.app()
    err = await call(store, "POST", LIST, store.admin, 400, {"name": name, "value": "v"}, app=app)
    assert err["code"] == "invalid_secret_name"
    if name:
        err = await call(store, "GET", ONE, store.admin, 400, app=app, name=name)
        assert err["code"] == "invalid_secret_name"


async def test_spice_unauthenticated_is_401(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "v")
    for method, template, body in [
        ("GET", LIST, None),
        ("POST", LIST, {"name": "A", "value": "x"}),
        ("GET", ONE, None),
        ("DELETE", ONE, None),
    ]:
        for token in (None, "lt_000000000000_nope", "garbage", store.admin + "x"):
            err = await call(store, method, template, token, 401, body, app=app, name="A")
            assert err["code"] == "unauthorized"
    assert await store.reveal(app) == {"A": "v"}


async def test_spice_insufficient_scope_is_403(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "v")
    reader = await store.token("secrets:read")
    apps_only = await store.token("apps:read", "apps:write")
    other_app = await store.token("*", app=app + 1000)
    for token in (apps_only, other_app):
        await call(store, "GET", LIST, token, 403, app=app)
        await call(store, "GET", ONE, token, 403, app=app, name="A")
    for token in (reader, apps_only, other_app):
        err = await call(store, "POST", LIST, token, 403, {"name": "A", "value": "x"}, app=app)
        assert err["code"] == "insufficient_scope"
        await call(store, "DELETE", ONE, token, 403, app=app, name="A")
    assert await store.reveal(app) == {"A": "v"}


async def test_spice_missing_app_or_secret_is_404(store: Store) -> None:
    await call(store, "GET", LIST, store.admin, 404, app=4242)
    await call(store, "POST", LIST, store.admin, 404, {"name": "A", "value": "v"}, app=4242)
    await call(store, "GET", ONE, store.admin, 404, app=4242, name="A")
    await call(store, "DELETE", ONE, store.admin, 404, app=4242, name="A")
    app = await store.app()
    await call(store, "GET", ONE, store.admin, 404, app=app, name="NOPE")
    err = await call(store, "DELETE", ONE, store.admin, 404, app=app, name="NOPE")
    assert err["code"] == "not_found"


async def test_spice_database_failure_is_500_without_details(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app = await store.app()
    await store.put(app, "A", "canary-500-value")
    await store.sql("ALTER TABLE secrets RENAME TO secrets_moved")
    for method, template, body in [
        ("GET", LIST, None),
        ("POST", LIST, {"name": "B", "value": "canary-500-value"}),
        ("GET", ONE, None),
        ("DELETE", ONE, None),
    ]:
        err = await call(store, method, template, store.admin, 500, body, app=app, name="A")
        assert err == {"error": "internal error", "code": "internal_error"}
    assert "canary-500-value" not in caplog.text


SEED_CASES = sorted(seed_statuses())


@pytest.mark.parametrize(("method", "route", "status"), SEED_CASES)
async def test_spice_every_seed_route_and_status(
    store: Store, method: str, route: str, status: int
) -> None:
    """Each (route, status) the vendor document lists, produced on purpose."""
    app = await store.app("seeded")
    await store.put(app, "A", "v")
    template = route.replace("{appId}", "{app}").replace("{secretName}", "{name}")
    body = {"name": "A", "value": "new"} if method == "POST" else None
    token: str | None = store.admin
    app_ref: object = app
    if status == 400:
        app_ref = 0
    elif status == 401:
        token = None
    elif status == 403:
        token = await store.token("apps:read")
    elif status == 404:
        app_ref = 4242
    elif status == 500:
        await store.sql("ALTER TABLE secrets RENAME TO secrets_moved")
    elif status not in (200, 204):
        raise AssertionError(f"no scenario for {status}")
    await call(store, method, template, token, status, body, app=app_ref, name="A")
