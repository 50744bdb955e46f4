"""The agent's local endpoint refuses everything but a local client that means it."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from loader.agent.local_api import create_local_app, guarded, refusal
from loader.agent.metrics import AgentMetrics
from loader.agent.presented import AgentState
from loader.agent.snapshot import Snapshot

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

    resp = await guarded(handler, refusal)(request)
    assert resp.status == 403 and VALUE not in resp.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/v1/nope", "/"])
@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.example:8701", "10.0.0.1"])
async def test_every_route_has_the_host_rule(endpoint: Any, path: str, host: str) -> None:
    """A DNS-rebinding page must not read revisions, staleness or last_error (secret names and
    paths) from /readyz and /metrics either."""
    ok = await endpoint.get(path)
    assert ok.status != 403
    resp = await endpoint.get(path, headers={"Host": host})
    assert resp.status == 403, (path, host)
    body = await resp.text()
    assert "revision" not in body and "loader_agent" not in body


async def raw_get(endpoint: Any, target: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.server.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nX-Loader-Request: true\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/v1/secrets",
        "http://localhost/v1/secrets",
        "HTTP://127.0.0.1:8701/v1/secrets/A",
        "http://evil.example/metrics",
    ],
)
async def test_absolute_form_request_targets_are_refused(endpoint: Any, target: str) -> None:
    """A request relayed by a forward proxy names the target in absolute form; the Host header
    alone would look local. Refused whatever host it names."""
    status, body = await raw_get(endpoint, "/v1/secrets")
    assert status == 200 and VALUE.encode() in body  # the same request in origin form works
    status, body = await raw_get(endpoint, target)
    assert status == 400, target
    assert VALUE.encode() not in body
