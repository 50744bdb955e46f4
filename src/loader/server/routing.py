"""The route table's types and the one request pipeline every route goes through.

Pipeline, in order (so nothing can be learnt about an app or secret before the token is good):
refusals of the client address (429) -> authenticate (401) -> scope (403) -> rate limit (429)
-> path parameters (400) -> app and environment binding (403) -> body (400/413) -> handler
(404, 409, 412, ...). Refusals (401/403, and the 429s of an address out of refusals) are audited
here, counted per client and interval (:mod:`loader.store.refusals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ValidationError

from loader.errors import (
    InsufficientScopeError,
    InvalidRequestError,
    LoaderError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    retry_seconds,
)
from loader.names import (
    DEFAULT_ENVIRONMENT,
    check_environment_name,
    check_secret_name,
    parse_app_id,
)
from loader.server import idempotency
from loader.server.limits import RATELIMIT_KEY, WRITE_METHODS
from loader.server.schemas import MAX_BODY_BYTES, MAX_VALUE_BYTES
from loader.server.shared import SHARED, ServerState
from loader.store.auth import Principal
from loader.store.models import AuditEvent, utcnow

log = logging.getLogger("loader.store")
REFUSED_PAUSE = 1.0  # seconds an address out of refusals waits for each 429
B = TypeVar("B", bound=BaseModel)
Handler = Callable[["Call[Any]"], Awaitable[web.StreamResponse]]
ScopeRule = str | Callable[[Mapping[str, str]], str] | None


@dataclass(frozen=True, slots=True)
class Param:
    """A documented query parameter or request header."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    scope: ScopeRule
    tag: str = "Secrets"
    body: type[BaseModel] | None = None
    body_types: tuple[str, ...] = ("application/json",)
    params: tuple[Param, ...] = ()
    success: int = 200
    response: str | None = None
    content_types: tuple[str, ...] = ("application/json",)
    errors: tuple[int, ...] = ()
    response_headers: tuple[str, ...] = ()
    spice: bool = False
    description: str = ""
    action: str = ""  # the audit action a refusal of this route is recorded as
    # Acts on a whole app (all its environments): tokens bound to environments are refused.
    whole_app: bool = False
    # Takes no credential at all: not limited by the refusals of its client's address.
    public: bool = False

    def action_for(self, query: Mapping[str, str]) -> str:
        if self.operation_id == "renderSecrets" and query.get("mode") in ("full", "Full"):
            return "reveal"
        return self.action

    def scope_for(self, query: Mapping[str, str]) -> str | None:
        if callable(self.scope):
            return self.scope(query)
        return self.scope

    @property
    def path_params(self) -> list[str]:
        return [p[1:-1] for p in self.path.split("/") if p.startswith("{")]

    @property
    def environment_scoped(self) -> bool:
        return self.spice or "{env}" in self.path


@dataclass(slots=True)
class Call(Generic[B]):
    """One request as a handler sees it: parsed, authenticated, authorised."""

    request: web.Request
    route: Route
    state: ServerState
    principal: Principal | None = None
    app_id: int = 0
    env_name: str = DEFAULT_ENVIRONMENT
    secret_name: str = ""
    body: B = field(default=cast(Any, None))

    @property
    def actor(self) -> str | None:
        return self.principal.token_id if self.principal else None

    @property
    def client(self) -> str | None:
        return self.request.remote

    def event(self, action: str, outcome: str = "ok", names: tuple[str, ...] = ()) -> AuditEvent:
        return AuditEvent(
            at=utcnow(),
            action=action,
            outcome=outcome,
            token_id=self.actor,
            app_id=self.app_id or None,
            environment=self.env_name if self.route.environment_scoped else None,
            names=names or ((self.secret_name,) if self.secret_name else ()),
            client=self.client,
            subject=self.principal.subject if self.principal else None,
        )

    def reveal_key(self, names: tuple[str, ...]) -> tuple[object, ...]:
        """``audit_key(self.event("reveal", names=names))``, without building the event (a
        reveal counted into its queued twin needs only this)."""
        return (
            "reveal",
            "ok",
            self.actor,
            self.app_id or None,
            self.env_name if self.route.environment_scoped else None,
            names or ((self.secret_name,) if self.secret_name else ()),
            self.client,
            self.principal.subject if self.principal else None,
            None,
        )


def endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    writes = route.method in WRITE_METHODS and route.scope is not None

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if not route.public:
                await _check_address(route, request)
            call = await _admit(route, request)
            response = await (_write(call) if writes else route.handler(call))
        except LoaderError as exc:
            if exc.status == 401:
                request.app[SHARED].refusals.refused(request.remote)
            response = loader_error(exc)
        except web.HTTPException as exc:
            response = http_error(exc)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            # The client went away mid-request (its body unread). Re-raised, aiohttp would log
            # a traceback and try a plain-text 500; there is nobody to answer, so a quiet 400.
            response = loader_error(InvalidRequestError("the client closed the connection"))
        except Exception:
            log.exception("unhandled error in %s %s", request.method, route.path)
            response = loader_error(LoaderError("internal error"))
        else:
            headers = response.headers
            if "X-Content-Type-Options" not in headers:
                headers["X-Content-Type-Options"] = "nosniff"
            limits = request.get(RATELIMIT_KEY)
            if limits:
                headers.update(limits)
        observe(request, route.path, response.status, started)
        return response

    handle.__name__ = route.operation_id
    return handle


def observe(request: web.Request, route: str, status: int, started: float) -> None:
    """Count the request in the store's metrics (by route template, never the raw path)."""
    metrics = request.app[SHARED].metrics
    if metrics is not None:
        metrics.observe(route, request.method, status, time.perf_counter() - started)


async def _write(call: Call[Any]) -> web.StreamResponse:
    """A write: refused while the master key fails its self-test; with an Idempotency-Key,
    answered once and replayed to retries."""
    state = call.state
    if state.readiness is not None:
        problem = state.readiness.write_problem()
        if problem is not None:
            raise problem
    key = call.request.headers.get(idempotency.HEADER)
    if key is None or call.principal is None:
        return await call.route.handler(call)
    request = call.request
    fingerprint = idempotency.fingerprint(request.method, request.path_qs, await request.read())

    async def produce() -> web.StreamResponse:
        try:
            return await call.route.handler(call)
        except LoaderError as exc:  # a refusal is an answer too, replayed like a success
            return loader_error(exc)

    return await state.idempotency.run(call.principal.token_id, key, fingerprint, produce)


async def _check_address(route: Route, request: web.Request) -> None:
    """An address out of refusals gets 429 before its credential costs a database read -- after
    a pause, so a flood on kept-alive connections slows to one request per connection per
    :data:`REFUSED_PAUSE` instead of spending the store's CPU on thousands of 429s a second."""
    state = request.app[SHARED]
    try:
        state.refusals.check(request.remote)
    except RateLimitedError:
        action = route.action_for(request.query)
        state.audit.refused(Call(request, route, state).event(action, "rate_limited"))
        await asyncio.sleep(REFUSED_PAUSE)
        raise


async def _admit(route: Route, request: web.Request) -> Call[Any]:
    """Everything before the handler; returns the request as the handler sees it. (Separate from
    ``handle`` so its frame is gone while a long-poll handler waits.)"""
    state = request.app[SHARED]
    call: Call[Any] = Call(request, route, state)
    try:
        if route.scope is not None:
            call.principal = await state.authenticate(request)
            scope = route.scope_for(request.query)
            if scope is not None:
                call.principal.require(scope)
            state.limiter.check(call.principal, route, request)
        _parse_path(call, request.match_info)
        if call.principal is not None:
            _check_bindings(call, call.principal)
    except (UnauthorizedError, InsufficientScopeError) as exc:
        outcome = "unauthorized" if isinstance(exc, UnauthorizedError) else "forbidden"
        with contextlib.suppress(LoaderError):  # record what the request aimed at
            _parse_path(call, request.match_info)
        state.audit.refused(call.event(route.action_for(request.query), outcome))
        raise
    if route.body is not None:
        call.body = await parse_body(request, route.body, route.body_types)
    return call


def unmatched(routes: tuple[Route, ...]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The catch-all: 405 (with Allow) for a known path, else 404, both in JSON."""
    patterns = [
        (re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(r.path)) + "$"), r.method)
        for r in routes
    ]

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        allowed = sorted({method for pattern, method in patterns if pattern.match(request.path)})
        if allowed:
            allow = ", ".join(allowed)
            response = loader_error(
                MethodNotAllowedError(f"method not allowed (allowed: {allow})"), {"Allow": allow}
            )
        else:
            response = loader_error(NotFoundError("no such route"))
        observe(request, "(unmatched)", response.status, started)
        return response

    return handle


def http_error(exc: web.HTTPException) -> web.Response:
    if exc.status == 413:
        return loader_error(
            PayloadTooLargeError(f"request body larger than {MAX_BODY_BYTES // 1024} KiB")
        )
    err = LoaderError(exc.reason or "request refused")
    err.status = exc.status if exc.status >= 400 else 500
    err.code = "invalid_request" if err.status < 500 else "internal_error"
    return loader_error(err)


def loader_error(exc: LoaderError, extra: Mapping[str, str] | None = None) -> web.Response:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", **(extra or {})}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="loader"'
    if isinstance(exc, RateLimitedError):
        headers.update(exc.headers)
        headers["Retry-After"] = str(retry_seconds(exc.retry_after))
    if isinstance(exc, ServiceUnavailableError):
        # The database health tracker logs the outage once; not a line per request here.
        if exc.retry_after is not None:
            headers["Retry-After"] = str(retry_seconds(exc.retry_after))
    elif exc.status >= 500:
        log.error("%s (%s)", exc.message, exc.code)
    return error_response(exc, headers)


def _parse_path(call: Call[Any], info: Mapping[str, str]) -> None:
    if "appId" in info:
        call.app_id = parse_app_id(info["appId"])
    if "env" in info:
        call.env_name = check_environment_name(info["env"])
    if "secretName" in info:
        call.secret_name = check_secret_name(info["secretName"])


def _check_bindings(call: Call[Any], principal: Principal) -> None:
    if call.route.whole_app:
        principal.require_all_environments()
    if call.app_id:
        principal.require_app(call.app_id)
    if call.route.environment_scoped:
        principal.require_environment(call.env_name)


FORM = "application/x-www-form-urlencoded"


async def parse_body(
    request: web.Request, model: type[B], types: tuple[str, ...] = ("application/json",)
) -> B:
    raw = await request.read()
    if not raw:
        raise InvalidRequestError("a request body is required")
    data: Any
    if request.content_type == FORM and FORM in types:
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequestError("the form body is malformed") from None
        data = dict(pairs)
        if len(data) != len(pairs):
            raise InvalidRequestError("the form body repeats a field")
    else:
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            raise InvalidRequestError("the request body is not UTF-8") from None
        except (ValueError, RecursionError):
            raise InvalidRequestError("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_describe(exc)) from None
    _check_text(parsed)
    return parsed


def _describe(exc: ValidationError) -> str:
    """Field paths and messages only: pydantic's input echo could carry a value."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "string_pattern_mismatch" and where == "name":
            message = "invalid name (see the route's pattern)"
        parts.append(f"{where}: {message}")
    return "invalid request body: " + "; ".join(parts)


def _check_text(parsed: BaseModel) -> None:
    for name, value in parsed:
        if not isinstance(value, str):
            continue
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            raise InvalidRequestError(f"{name}: not valid Unicode text (lone surrogate)") from None
        if name == "value" and size > MAX_VALUE_BYTES:
            raise PayloadTooLargeError(f"value: larger than {MAX_VALUE_BYTES // 1024} KiB")


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(exc: LoaderError, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(exc.body(), exc.status, headers)
