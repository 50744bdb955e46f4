"""The agent's local endpoint: loopback or a unix socket only, for the runtime next to it.

Secret routes demand ``X-Loader-Request: true`` (a browser cannot send it cross-origin without a
preflight, which is refused) and a loopback ``Host`` (``localhost``, ``127.0.0.1``, ``[::1]``,
with or without a port), so neither SSRF through another service nor DNS rebinding reaches them;
a TCP peer must be loopback too. No CORS headers are ever sent. Nothing logs a value.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from loader import formats
from loader.agent.metrics import AgentMetrics
from loader.agent.state import AgentState
from loader.errors import UnrenderableError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE = web.AppKey("agent_state", AgentState)
METRICS = web.AppKey("agent_metrics", AgentMetrics)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
SECRET_PREFIX = "/v1/secrets"
MAX_WAIT = 60.0
NO_STORE = {"Cache-Control": "no-store"}


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
    if remote is None or remote == "" or remote.startswith("/"):
        return True  # a unix socket
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(SECRET_PREFIX):
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method not allowed", "invalid_request")
        if not peer_is_loopback(request):
            return _error(403, "only local clients may read secrets", "insufficient_scope")
        if not host_is_loopback(request.headers.get("Host")):
            return _error(
                403, "the Host header must be localhost, 127.0.0.1 or [::1]", "insufficient_scope"
            )
        if request.headers.get("X-Loader-Request", "").lower() != "true":
            return _error(
                403, "the X-Loader-Request: true header is required", "insufficient_scope"
            )
        if "Origin" in request.headers:
            return _error(403, "cross-origin requests are refused", "insufficient_scope")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error(404, "not found", "not_found")
        if exc.status == 405:
            return _error(405, "method not allowed", "invalid_request")
        raise
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


async def secrets(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.rendered is None:
        return _error(503, "not ready: no secrets rendered yet", "unavailable")
    fmt = request.query.get("format", "json")
    if fmt not in formats.FORMATS:
        return _error(400, f"format must be one of {', '.join(formats.FORMATS)}", "invalid_request")
    raw_wait = request.query.get("wait")
    wait = 0.0
    if raw_wait is not None:
        try:
            wait = float(raw_wait)
        except ValueError:
            wait = -1
        if not 0 <= wait <= MAX_WAIT:
            return _error(400, "wait must be seconds from 0 to 60", "invalid_request")
    etag = f'"g{state.generation}.r{state.rendered.revision}"'
    if request.headers.get("If-None-Match") == etag:
        if wait <= 0 or not await state.wait_change(state.generation, wait):
            return web.Response(status=304, headers={**NO_STORE, "ETag": etag})
        assert state.rendered is not None
        etag = f'"g{state.generation}.r{state.rendered.revision}"'
    values = state.rendered.values
    headers = {**NO_STORE, "ETag": etag, "X-Loader-Revision": str(state.rendered.revision)}
    if fmt == "json":
        body = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
        return web.Response(text=body, content_type="application/json", headers=headers)
    try:
        text = formats.render(fmt, values)
    except UnrenderableError as exc:
        return _error(422, str(exc), "invalid_request")
    return web.Response(text=text, headers={**headers, "Content-Type": formats.CONTENT_TYPES[fmt]})


async def secret(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.rendered is None:
        return _error(503, "not ready: no secrets rendered yet", "unavailable")
    value = state.rendered.values.get(request.match_info["name"])
    if value is None:
        return _error(404, "no such secret", "not_found")
    return web.Response(
        body=value.encode(), content_type="text/plain", charset="utf-8", headers=NO_STORE
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    r = request.app[STATE].readiness()
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
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def _release(app: web.Application) -> None:
    app[STATE].release()


def create_local_app(state: AgentState, agent_metrics: AgentMetrics) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=4096)
    app[STATE] = state
    app[METRICS] = agent_metrics
    app.on_shutdown.append(_release)
    app.router.add_get("/v1/secrets", secrets)
    app.router.add_get("/v1/secrets/{name}", secret)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
