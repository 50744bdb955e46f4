"""The agent's local endpoint refuses everything but a local client that means it."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from loader.agent.local_api import create_local_app, guarded
from loader.agent.metrics import AgentMetrics
from loader.agent.snapshot import Snapshot
from loader.agent.state import AgentState

VALUE = "endpoint-canary-3b7d"


@pytest.fixture
async def endpoint(aiohttp_client: Any) -> Any:
    state = AgentState()
    state.rendered_ok(Snapshot(1, '"r1.1"', {"A": VALUE}))
    return await aiohttp_client(create_local_app(state, AgentMetrics(state)))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Loader-Request": "true"}, 200),
        ({"X-Loader-Request": "true", "Host": "localhost:8701"}, 200),
        ({}, 403),  # missing header
        ({"X-Loader-Request": "false"}, 403),
        ({"X-Loader-Request": "true", "Host": "evil.example"}, 403),
        (
            {"X-Loader-Request": "true", "Host": "rebind.attacker.example:8701"},
            403,
        ),  # DNS rebinding
        ({"X-Loader-Request": "true", "Host": "127.0.0.1.nip.io"}, 403),
        ({"X-Loader-Request": "true", "Host": "localhost@evil.example"}, 403),
        ({"X-Loader-Request": "true", "Origin": "http://localhost:3000"}, 403),
        ({"X-Loader-Request": "true", "Origin": "null"}, 403),
    ],
)
async def test_endpoint_refusals(endpoint: Any, headers: dict[str, str], status: int) -> None:
    for path in ("/v1/secrets", "/v1/secrets/A"):
        resp = await endpoint.get(path, headers=headers)
        body = await resp.text()
        assert resp.status == status, (path, headers)
        assert not any(h.lower().startswith("access-control") for h in resp.headers)
        if status != 200:
            assert VALUE not in body


async def test_endpoint_refuses_writes_and_preflight(endpoint: Any) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        resp = await endpoint.request(
            method,
            "/v1/secrets",
            headers={
                "X-Loader-Request": "true",
                "Access-Control-Request-Method": "GET",
                "Origin": "http://evil.example",
            },
        )
        assert resp.status in (403, 405)
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_non_loopback_peer_is_refused() -> None:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (
        ("203.0.113.7", 40000) if key == "peername" else default
    )
    request = make_mocked_request(
        "GET",
        "/v1/secrets",
        headers={"Host": "localhost", "X-Loader-Request": "true"},
        transport=transport,
    )

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(text=VALUE)

    resp = await guarded(handler)(request)
    assert resp.status == 403 and VALUE not in resp.text  # type: ignore[attr-defined]
