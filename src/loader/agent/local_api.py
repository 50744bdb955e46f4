"""The agent's local endpoint: loopback or a unix socket only, for the runtime next to it.

Every route (health, readiness and metrics too: they name secrets and paths in ``last_error``)
demands a loopback peer, a loopback ``Host`` (``localhost``, ``127.0.0.1``, ``[::1]``, with or
without a port) and an origin-form request target (``GET /path``, not ``GET http://host/path``),
so neither DNS rebinding nor a request relayed through a proxy reaches it. Secret routes also
demand ``X-Loader-Request: true`` (a browser cannot send it cross-origin without a preflight,
which is refused) and no ``Origin``. No CORS headers are ever sent. Nothing logs a value.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from loader import formats
from loader.agent.metrics import AgentMetrics
from loader.agent.presented import AgentState
from loader.errors import UnrenderableError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AGENT = web.AppKey("agent_state", AgentState)
METRICS = web.AppKey("agent_metrics", AgentMetrics)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
SECRET_PREFIX = "/v1/secrets"
MAX_WAIT = 60.0
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _error(status: int, message: str, code: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": message, "code": code}),
        content_type="application/json",
        headers=NO_STORE,
    )


def host_is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name = host[: end + 1] if end > 0 else host
        rest = host[end + 1 :] if end > 0 else ""
    else:
        name, sep, port = host.partition(":")
        rest = sep + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return False
    return name in LOOPBACK_HOSTS


def peer_is_loopback(request: web.Request) -> bool:
    remote = request.remote
    if not remote or remote.startswith("/"):
        return True  # a unix socket
    if remote in {"127.0.0.1", "::1"}:
        return True  # the common case, without parsing
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def local_refusal(request: web.Request) -> web.Response | None:
    """Why a request may not use the endpoint at all (as a response), or None when it may."""
    if not request.raw_path.startswith("/"):
        return _error(400, "absolute-form request targets are refused", "invalid_request")
    if not peer_is_loopback(request):
        return _error(403, "only local clients may use this endpoint", "insufficient_scope")
    host = request.headers.get("Host")
    if host not in _PLAIN_HOSTS and not host_is_loopback(host):
        return _error(
            403, "the Host header must be localhost, 127.0.0.1 or [::1]", "insufficient_scope"
        )
    return None


def refusal(request: web.Request) -> web.Response | None:
    """Why a request may not read secrets (as a response), or None when it may."""
    if request.method not in ("GET", "HEAD"):
        return _error(405, "method not allowed", "invalid_request")
    refused = local_refusal(request)
    if refused is not None:
        return refused
    headers = request.headers
    marker = headers.get("X-Loader-Request")
    if marker != "true" and (marker or "").lower() != "true":
        return _error(403, "the X-Loader-Request: true header is required", "insufficient_scope")
    if "Origin" in headers:
        return _error(403, "cross-origin requests are refused", "insufficient_scope")
    return None


_PLAIN_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def guarded(handler: Handler, check: Callable[[web.Request], web.Response | None]) -> Handler:
    """``handler`` behind ``check`` (a wrapper, not a middleware: no extra coroutine layer on the
    hot path)."""

    async def guard(request: web.Request) -> web.StreamResponse:
        refused = check(request)
        if refused is not None:
            return refused
        return await handler(request)

    return guard


async def unmatched(request: web.Request) -> web.StreamResponse:
    if request.path.startswith(SECRET_PREFIX) and request.method not in ("GET", "HEAD"):
        return _error(405, "method not allowed", "invalid_request")
    if request.path in ("/healthz", "/readyz", "/metrics", SECRET_PREFIX):
        return _error(405, "method not allowed", "invalid_request")
    return _error(404, "not found", "not_found")


class Bodies:
    """Encoded responses for the current generation: built once per change, per format."""

    __slots__ = ("by_format", "generation")

    def __init__(self) -> None:
        self.generation = -1
        self.by_format: dict[str, tuple[bytes, dict[str, str]]] = {}

    def get(self, state: AgentState, fmt: str) -> tuple[bytes, dict[str, str]]:
        if self.generation != state.generation:
            self.by_format.clear()
            self.generation = state.generation
        hit = self.by_format.get(fmt)
        if hit is None:
            hit = self.by_format[fmt] = _encode(state, fmt)
        return hit


BODIES = web.AppKey("agent_bodies", Bodies)


def _encode(state: AgentState, fmt: str) -> tuple[bytes, dict[str, str]]:
    rendered = state.rendered
    assert rendered is not None
    if fmt == "json":
        body = json.dumps(rendered.values, ensure_ascii=False, separators=(",", ":")).encode()
        content_type = "application/json"
    else:
        body = formats.render(fmt, rendered.values).encode()
        content_type = formats.CONTENT_TYPES[fmt]
    headers = {
        **NO_STORE,
        "ETag": _etag(state),
        "X-Loader-Revision": str(rendered.revision),
        "Content-Type": content_type,
    }
    return body, headers


def _etag(state: AgentState) -> str:
    assert state.rendered is not None
    return f'"g{state.generation}.r{state.rendered.revision}"'


async def secrets(request: web.Request) -> web.StreamResponse:
    state = request.app[AGENT]
    if state.rendered is None:
        return _error(503, "not ready: no secrets rendered yet", "unavailable")
    query = request.query
    fmt = query.get("format", "json") if query else "json"
    if fmt not in formats.FORMATS:
        return _error(400, f"format must be one of {', '.join(formats.FORMATS)}", "invalid_request")
    wait = 0.0
    raw_wait = query.get("wait") if query else None
    if raw_wait is not None:
        try:
            wait = float(raw_wait)
        except ValueError:
            wait = -1
        if not 0 <= wait <= MAX_WAIT:
            return _error(400, "wait must be seconds from 0 to 60", "invalid_request")
    etag = _etag(state)
    if request.headers.get("If-None-Match") == etag and (
        wait <= 0 or not await state.wait_change(state.generation, wait)
    ):
        return web.Response(status=304, headers={**NO_STORE, "ETag": etag})
    try:
        body, headers = request.app[BODIES].get(state, fmt)
    except UnrenderableError as exc:
        return _error(422, str(exc), "invalid_request")
    return web.Response(body=body, headers=headers)


async def secret(request: web.Request) -> web.StreamResponse:
    state = request.app[AGENT]
    if state.rendered is None:
        return _error(503, "not ready: no secrets rendered yet", "unavailable")
    value = state.rendered.values.get(request.match_info["name"])
    if value is None:
        return _error(404, "no such secret", "not_found")
    return web.Response(
        body=value.encode(), content_type="text/plain", charset="utf-8", headers=NO_STORE
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"}, headers=NO_STORE)


async def readyz(request: web.Request) -> web.StreamResponse:
    r = request.app[AGENT].readiness()
    body: dict[str, Any] = {
        "ready": r.ready,
        "revision": r.revision,
        "age_seconds": None if r.age_seconds is None else round(r.age_seconds, 3),
        "stale": r.stale,
        "last_error": r.last_error,
    }
    return web.json_response(body, status=200 if r.ready else 503, headers=NO_STORE)


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={**NO_STORE, "Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def _release(app: web.Application) -> None:
    app[AGENT].release()


def create_local_app(state: AgentState, agent_metrics: AgentMetrics) -> web.Application:
    app = web.Application(client_max_size=4096)
    app[AGENT] = state
    app[METRICS] = agent_metrics
    app[BODIES] = Bodies()
    app.on_shutdown.append(_release)
    app.router.add_get("/v1/secrets", guarded(secrets, refusal))
    app.router.add_get("/v1/secrets/{name}", guarded(secret, refusal))
    app.router.add_get("/healthz", guarded(healthz, local_refusal))
    app.router.add_get("/readyz", guarded(readyz, local_refusal))
    app.router.add_get("/metrics", guarded(metrics, local_refusal))
    app.router.add_route("*", "/{unmatched:.*}", guarded(unmatched, local_refusal))
    return app
