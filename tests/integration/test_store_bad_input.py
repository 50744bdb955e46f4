"""Every bad input gets a clear 4xx with the contract's error body and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.store_harness import Store

SECRETS = "/v1/apps/{app}/environments/default/secrets"


async def snapshot(store: Store, app: int) -> tuple[int, dict[str, str], list[Any]]:
    h = store.auth(store.admin)
    listing = await (await store.client.get(f"/v1/apps/{app}/secrets", headers=h)).json()
    apps = await (await store.client.get("/v1/apps", headers=h)).json()
    return await store.revision(app), await store.reveal(app), [listing, apps]


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "code"),
    [
        ("POST", SECRETS, b"not json", 400, "invalid_request"),
        ("POST", SECRETS, b"", 400, "invalid_request"),
        ("POST", SECRETS, b"[1, 2]", 400, "invalid_request"),
        ("POST", SECRETS, b'{"name": "A", "value": 1}', 400, "invalid_request"),
        ("POST", SECRETS, b'{"name": "A", "value": true}', 400, "invalid_request"),
        (
            "POST",
            SECRETS,
            b'{"name": "A", "value": null, "description": 5}',
            400,
            "invalid_request",
        ),
        ("POST", SECRETS, b'{"name": "A", "value": "v", "values": "typo"}', 400, "invalid_request"),
        ("POST", SECRETS, b'{"name": "bad name", "value": "v"}', 400, "invalid_secret_name"),
        ("POST", SECRETS, b'{"name": "A", "value": "\\ud800"}', 400, "invalid_request"),
        ("POST", SECRETS, b'\xff\xfe{"name"', 400, "invalid_request"),
        ("POST", SECRETS, b"[" * 100_000 + b"]" * 100_000, 400, "invalid_request"),
        ("POST", SECRETS, b'{"name": "A", "value": "v"' + b", " * 3 + b"}", 400, "invalid_request"),
        ("POST", SECRETS, b'{"name": "A", "value": 1' + b"0" * 5000 + b"}", 400, "invalid_request"),
        ("PUT", SECRETS + "/A/value", b'{"value": ["x"]}', 400, "invalid_request"),
        ("PATCH", SECRETS + "/A", b'{"description": 3}', 400, "invalid_request"),
        ("POST", SECRETS + "/A/rollback", b'{"version": "1"}', 400, "invalid_request"),
        ("POST", SECRETS + "/A/rollback", b'{"version": 0}', 400, "invalid_request"),
        ("POST", SECRETS + "/A/rollback", b'{"version": 1.5}', 400, "invalid_request"),
        ("POST", "/v1/apps", b'{"name": ""}', 400, "invalid_request"),
        ("POST", "/v1/apps", b'{"name": "../etc"}', 400, "invalid_request"),
        ("POST", "/v1/apps/{app}/environments", b'{"name": "a/b"}', 400, "invalid_request"),
        ("GET", SECRETS + "?page=0", b"", 400, "invalid_request"),
        ("GET", SECRETS + "?page_size=5000", b"", 400, "invalid_request"),
        ("GET", SECRETS + "?page=x", b"", 400, "invalid_request"),
        (
            "GET",
            "/v1/apps/{app}/environments/default/rendered?mode=all",
            b"",
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/apps/{app}/environments/default/rendered?format=toml",
            b"",
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/apps/{app}/environments/default/rendered?wait=61",
            b"",
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/apps/{app}/environments/default/rendered?wait=nan",
            b"",
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/apps/{app}/environments/default/rendered?names=A,b-c",
            b"",
            400,
            "invalid_secret_name",
        ),
        ("GET", "/v1/apps/{app}/environments/bad%20env/secrets", b"", 400, "invalid_request"),
        ("GET", "/v1/apps/{app}/audit?since=yesterday", b"", 400, "invalid_request"),
        ("GET", "/v1/apps/{app}/audit?action=", b"", 400, "invalid_request"),
        ("GET", "/v1/apps/{app}/audit?action=nope", b"", 400, "invalid_request"),
        ("DELETE", "/v1/apps/{app}/environments/default", b"", 409, "invalid_request"),
        ("GET", "/v1/nope", b"", 404, "not_found"),
        ("PUT", "/v1/apps", b"{}", 405, "invalid_request"),
    ],
)
async def test_bad_input_changes_nothing(
    store: Store, method: str, path: str, raw: bytes, status: int, code: str
) -> None:
    app = await store.app()
    await store.put(app, "A", "original")
    before = await snapshot(store, app)
    resp = await store.client.request(
        method,
        path.format(app=app),
        data=raw,
        headers={**store.auth(store.admin), "Content-Type": "application/json"},
    )
    text = await resp.text()
    assert resp.status == status, text
    body = json.loads(text)
    assert body["code"] == code
    assert body["error"]
    assert "original" not in text
    assert await snapshot(store, app) == before


async def test_value_over_64_kib_is_413(store: Store) -> None:
    app = await store.app()
    before = await snapshot(store, app)
    resp = await store.client.post(
        SECRETS.format(app=app),
        json={"name": "BIG", "value": "é" * (33 * 1024)},
        headers=store.auth(store.admin),
    )
    assert resp.status == 413
    assert (await resp.json())["code"] == "payload_too_large"
    ok = await store.client.post(
        SECRETS.format(app=app),
        json={"name": "BIG", "value": "x" * (64 * 1024)},
        headers=store.auth(store.admin),
    )
    assert ok.status == 200
    assert (await store.reveal(app))["BIG"] == "x" * (64 * 1024)
    assert before[0] + 1 == await store.revision(app)


async def test_body_over_1_mib_is_413(store: Store) -> None:
    app = await store.app()
    before = await snapshot(store, app)
    resp = await store.client.post(
        SECRETS.format(app=app),
        data=b'{"name": "A", "value": "' + b"x" * (1024 * 1024 + 1) + b'"}',
        headers={**store.auth(store.admin), "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["code"] == "payload_too_large"
    assert await snapshot(store, app) == before


async def test_duplicate_app_is_409(store: Store) -> None:
    await store.app("dup")
    resp = await store.client.post(
        "/v1/apps", json={"name": "dup"}, headers=store.auth(store.admin)
    )
    assert resp.status == 409
    assert (await resp.json())["code"] == "already_exists"


async def test_method_not_allowed_keeps_allow_header(store: Store) -> None:
    resp = await store.client.patch("/v1/health")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
