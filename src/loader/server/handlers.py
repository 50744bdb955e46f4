"""Route handlers and the route table (which also generates the OpenAPI document)."""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from aiohttp import web

from loader import formats
from loader.errors import (
    ConflictError,
    InsufficientScopeError,
    InvalidRequestError,
    LoaderError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
)
from loader.names import (
    DEFAULT_ENVIRONMENT,
    SECRET_NAME_MAX,
    SECRET_NAME_PATTERN,
    check_app_name,
    check_environment_name,
    check_secret_name,
)
from loader.server import etags, ops, rollouts
from loader.server.exchange import exchange_workload_token, issued, narrowed
from loader.server.routing import Call, Param, Route, json_response
from loader.server.schemas import (
    AppBody,
    DescriptionBody,
    EnvironmentBody,
    RollbackBody,
    SecretBody,
    SpiceSecretBody,
    TokenRequestBody,
    ValueBody,
)
from loader.store.audit import ACTIONS, event_json
from loader.store.auth import usable, verify_secret
from loader.store.models import (
    UNSET,
    App,
    AuditQuery,
    Environment,
    SecretMeta,
    WriteResult,
    iso,
    parse_iso,
    utcnow,
)
from loader.store.service import MASK, Revealed, WriteConditions
from loader.workload import JWT_BEARER

log = logging.getLogger("loader.store")
NO_STORE = {"Cache-Control": "no-store"}
NAMES_PATTERN = r"^([a-zA-Z_][a-zA-Z0-9_]{0,255})?(,[a-zA-Z_][a-zA-Z0-9_]{0,255})*$"
MAX_PAGE_SIZE = 1000
SPICE_PAGE = 500  # the Spice list is read, encoded and sent this many secrets at a time
MAX_NAMES = 1000


# -- shapes --------------------------------------------------------------------------------


def secret_json(meta: SecretMeta, environment: str) -> dict[str, Any]:
    return {
        "id": meta.id,
        "name": meta.name,
        "value": MASK,
        "created_at": iso(meta.created_at),
        "updated_at": iso(meta.updated_at),
        "environment": environment,
        "description": meta.description,
        "has_value": meta.has_value,
        "version": meta.version,
        "etag": meta.etag,
    }


def app_json(app: App) -> dict[str, Any]:
    return {"id": app.id, "name": app.name, "created_at": iso(app.created_at)}


def env_json(env: Environment) -> dict[str, Any]:
    return {
        "name": env.name,
        "app_id": env.app_id,
        "revision": env.revision,
        "created_at": iso(env.created_at),
    }


def secret_response(meta: SecretMeta, environment: str) -> web.Response:
    return json_response(secret_json(meta, environment), headers={**NO_STORE, "ETag": meta.etag})


def written_response(result: WriteResult, environment: str) -> web.Response:
    """A write's answer: the secret, and whether the write changed anything at all."""
    body = {**secret_json(result.secret, environment), "changed": result.changed}
    return json_response(body, headers={**NO_STORE, "ETag": result.secret.etag})


# -- query parsing -------------------------------------------------------------------------


def int_param(call: Call[Any], name: str, default: int, low: int, high: int) -> int:
    raw = call.request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high)):
        raise InvalidRequestError(f"{name} must be an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be an integer from {low} to {high}")
    return value


def conditions(call: Call[Any], action: str) -> WriteConditions:
    """What every write and delete of a secret carries: the request's ``If-Match`` (absent or
    blank: none), its token as the actor, and its audit record."""
    return WriteConditions(
        if_match=etags.if_match(call.request.headers.get("If-Match")),
        actor=call.actor,
        audit=call.event(action),
    )


async def write_secret(
    call: Call[Any], env_name: str, name: str, action: str, **change: Any
) -> web.StreamResponse:
    """The secret routes' write: ``change`` as :meth:`StoreService.write` takes it."""
    service = call.state.service
    env = await service.environment(call.app_id, env_name)
    result = await service.write(env, name, **conditions(call, action), **change)
    return written_response(result, env.name)


# -- health and discovery ------------------------------------------------------------------


async def health(call: Call[Any]) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def openapi(call: Call[Any]) -> web.StreamResponse:
    return json_response(call.state.openapi)


# -- apps ----------------------------------------------------------------------------------


async def list_apps(call: Call[Any]) -> web.StreamResponse:
    assert call.principal is not None
    apps = await call.state.service.apps(only=call.principal.app_id)
    return json_response({"apps": [app_json(a) for a in apps]})


async def create_app(call: Call[AppBody]) -> web.StreamResponse:
    assert call.principal is not None
    if call.principal.app_id is not None:
        raise InsufficientScopeError("a token bound to an app cannot create apps")
    app = await call.state.service.create_app(check_app_name(call.body.name))
    call.app_id = app.id
    call.state.audit.record(call.event("create_app", names=()))
    return json_response(app_json(app), status=201)


async def get_app(call: Call[Any]) -> web.StreamResponse:
    return json_response(app_json(await call.state.service.app(call.app_id)))


async def delete_app(call: Call[Any]) -> web.StreamResponse:
    await call.state.service.delete_app(call.app_id)
    call.state.audit.record(call.event("delete_app"))
    return web.Response(status=204)


# -- environments --------------------------------------------------------------------------


async def list_environments(call: Call[Any]) -> web.StreamResponse:
    envs = await call.state.service.environments(call.app_id)
    assert call.principal is not None
    allowed = call.principal.environments
    shown = [e for e in envs if allowed is None or e.name in allowed]
    return json_response({"environments": [env_json(e) for e in shown]})


async def create_environment(call: Call[EnvironmentBody]) -> web.StreamResponse:
    assert call.principal is not None
    name = check_environment_name(call.body.name)
    call.principal.require_environment(name)
    env = await call.state.service.create_environment(call.app_id, name)
    call.env_name = name
    call.state.audit.record(call.event("create_environment"))
    return json_response(env_json(env), status=201)


async def get_environment(call: Call[Any]) -> web.StreamResponse:
    env = await call.state.service.environment(call.app_id, call.env_name)
    return json_response(env_json(env))


async def delete_environment(call: Call[Any]) -> web.StreamResponse:
    if call.env_name == DEFAULT_ENVIRONMENT:
        raise ConflictError("the default environment cannot be deleted")
    await call.state.service.delete_environment(call.app_id, call.env_name)
    call.state.audit.record(call.event("delete_environment"))
    return web.Response(status=204)


# -- secrets -------------------------------------------------------------------------------


async def list_secrets_spice(call: Call[Any]) -> web.StreamResponse:
    """Every secret of the default environment, in the Spice shape. A long list is streamed a
    page at a time: no request holds more than a page or encodes more than a page between two
    turns of the event loop, and (:attr:`ServerState.list_pages`) only one page of all the
    lists being made is read and encoded at a time -- so other clients stay responsive however
    many long lists are asked for."""
    service = call.state.service
    env = await service.environment(call.app_id, DEFAULT_ENVIRONMENT)
    first, count, total = await _spice_page(call, env, 0)
    if count >= total:
        return web.Response(
            body=b'{"secrets":[' + first + b"]}",
            content_type="application/json",
            headers=NO_STORE,
        )
    response = web.StreamResponse(headers={**NO_STORE, "Content-Type": "application/json"})
    await response.prepare(call.request)
    await response.write(b'{"secrets":[' + first)
    offset = count
    try:
        while offset < total:
            page, count, total = await _spice_page(call, env, offset)
            if not count:
                break
            await response.write(b"," + page)
            offset += count
    except LoaderError as exc:
        # The status is sent: end the connection without the closing chunk, so no client can
        # take a cut list for a whole one.
        log.error("listing secrets failed after %d of them: %s", offset, exc.message)
        transport = call.request.transport
        if transport is not None:
            transport.abort()
        return response
    await response.write(b"]}")
    await response.write_eof()
    return response


async def _spice_page(call: Call[Any], env: Environment, offset: int) -> tuple[bytes, int, int]:
    """One page of the Spice list, encoded (the JSON array's items, without brackets), how many
    items it holds, and how many the environment holds now."""
    async with call.state.list_pages:
        metas, total = await call.state.service.secrets(env, offset, SPICE_PAGE)
        items = [secret_json(m, env.name) for m in metas]
        body = json.dumps(items, separators=(",", ":"), ensure_ascii=False)[1:-1].encode()
        return body, len(metas), total


async def list_secrets(call: Call[Any]) -> web.StreamResponse:
    page = int_param(call, "page", 1, 1, 10**9)
    size = int_param(call, "page_size", 100, 1, MAX_PAGE_SIZE)
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    metas, total = await service.secrets(env, (page - 1) * size, size)
    return json_response(
        {
            "secrets": [secret_json(m, env.name) for m in metas],
            "page": page,
            "page_size": size,
            "total": total,
            "total_pages": math.ceil(total / size),
        },
        headers=NO_STORE,
    )


async def upsert_secret_spice(call: Call[SpiceSecretBody]) -> web.StreamResponse:
    call.secret_name = check_secret_name(call.body.name)
    return await write_secret(
        call, DEFAULT_ENVIRONMENT, call.secret_name, "upsert_secret", value=call.body.value
    )


async def upsert_secret(call: Call[SecretBody]) -> web.StreamResponse:
    call.secret_name = check_secret_name(call.body.name)
    body = call.body
    return await write_secret(
        call,
        call.env_name,
        call.secret_name,
        "upsert_secret" if body.value is not None else "declare_secret",
        value=body.value,
        description=body.description if "description" in body.model_fields_set else UNSET,
    )


async def get_secret(call: Call[Any]) -> web.StreamResponse:
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    return secret_response(await service.secret(env, call.secret_name), env.name)


async def patch_secret(call: Call[DescriptionBody]) -> web.StreamResponse:
    change = {"description": call.body.description, "must_exist": True}
    return await write_secret(call, call.env_name, call.secret_name, "update_secret", **change)


async def put_value(call: Call[ValueBody]) -> web.StreamResponse:
    change = {"value": call.body.value, "must_exist": True}
    return await write_secret(call, call.env_name, call.secret_name, "set_value", **change)


async def delete_secret(call: Call[Any]) -> web.StreamResponse:
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    await service.delete(env, call.secret_name, **conditions(call, "delete_secret"))
    return web.Response(status=204)


async def list_versions(call: Call[Any]) -> web.StreamResponse:
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    versions = await service.versions(env, call.secret_name)
    return json_response(
        {
            "versions": [
                {
                    "version": v.version,
                    "created_at": iso(v.created_at),
                    "actor": v.actor,
                    "has_value": v.has_value,
                }
                for v in versions
            ]
        },
        headers=NO_STORE,
    )


async def rollback(call: Call[RollbackBody]) -> web.StreamResponse:
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    result = await service.rollback(
        env, call.secret_name, call.body.version, **conditions(call, "rollback_secret")
    )
    return written_response(result, env.name)


# -- the runtime read ----------------------------------------------------------------------

_MODES = {"full": "full", "Full": "full", "preview": "preview", "PreviewOnly": "preview"}


def _mode(query: Any) -> str:
    raw = query.get("mode", "preview")
    mode = _MODES.get(raw)
    if mode is None:
        raise InvalidRequestError("mode must be full or preview")
    return mode


def rendered_scope(query: Any) -> str:
    return "secrets:reveal" if _MODES.get(query.get("mode", "")) == "full" else "secrets:read"


def _names(query: Any) -> list[str] | None:
    raw = query.get("names")
    if raw is None or raw == "":
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_NAMES:
        raise InvalidRequestError(f"names: at most {MAX_NAMES} names")
    return [check_secret_name(n) for n in names]


def _wait(query: Any) -> float:
    raw = query.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequestError("wait must be a number of seconds from 0 to 60") from None
    return value  # (its range is checked against the store's bound on every request)


@dataclass(frozen=True, slots=True)
class RuntimeRead:
    """A runtime read's query, parsed: the same few query strings arrive thousands of times a
    second (every agent asks the same question), so each is parsed once (:func:`_read_query`)."""

    mode: str
    fmt: str
    names: tuple[str, ...] | None
    wait: float
    variant: int


_READS: dict[str, RuntimeRead] = {}
_READS_MAX = 1024


def _read_query(call: Call[Any]) -> RuntimeRead:
    raw = call.request.query_string
    read = _READS.get(raw)
    if read is None:
        query = call.request.query
        mode = _mode(query)
        fmt = query.get("format", "json")
        if fmt not in formats.FORMATS:
            raise InvalidRequestError(f"format must be one of {', '.join(formats.FORMATS)}")
        listed = _names(query)
        names = tuple(listed) if listed is not None else None
        wait = _wait(query)
        variant = zlib.crc32(f"{mode}|{fmt}|{','.join(sorted(names or ['*']))}".encode())
        read = RuntimeRead(mode, fmt, names, wait, variant)
        if len(_READS) >= _READS_MAX:
            _READS.clear()
        _READS[raw] = read
    if not 0 <= read.wait <= call.state.max_wait:  # (NaN too)
        raise InvalidRequestError(
            f"wait must be a number of seconds from 0 to {call.state.max_wait:g}"
        )
    return read


def rendered_etag(env_id: int, revision: int, variant: int) -> str:
    return f'"r{env_id}.{revision}.{variant:08x}"'


async def rendered(call: Call[Any]) -> web.StreamResponse:
    read = _read_query(call)
    mode, fmt, names, wait, variant = read.mode, read.fmt, read.names, read.wait, read.variant
    service = call.state.service
    env = await service.environment(call.app_id, call.env_name)
    rollouts.note_report(call, env)
    inm = call.request.headers.get("If-None-Match")
    current = rendered_etag(env.id, env.revision, variant)
    if inm is not None and current in etags.parse_etags(inm):
        if wait <= 0 or not await _hold(call, env, wait):
            return web.Response(status=304, headers={**NO_STORE, "ETag": current})
        # Woken by a change: the notifier knows the revision, so thousands of woken watchers
        # need no database read each (a vanished environment still 404s from the reveal).
        env = service.latest(env)

    if mode == "full":
        revealed = await service.reveal(env, names)
        # Refused (503) when the record cannot be written, unless --allow-unaudited-reveals.
        shown = revealed.names
        call.state.audit.reveal(call.reveal_key(shown), lambda: call.event("reveal", names=shown))
        # Every watcher woken by one change gets the same bytes and headers: built once.
        body, headers = call.state.bodies.get(
            env.id, revealed.revision, variant, lambda: _encoded(revealed, variant, fmt)
        )
        return web.Response(body=body, headers=headers)
    body, headers = _encoded(await service.preview(env, names), variant, fmt)
    return web.Response(body=body, headers=headers)


async def _hold(call: Call[Any], env: Environment, wait: float) -> bool:
    """Wait for a change to ``env`` as the request's token: at most the token's cap of held
    requests (429 past it), never past its expiry, woken at once by its revocation -- and the
    token is checked again when the wait ends, whatever ended it (401, audited, if it is no
    longer good). True when ``env`` changed."""
    principal = call.principal
    assert principal is not None
    state = call.state
    held = state.service.held_by(principal.token_id)
    if held >= state.max_long_polls_per_token:
        raise RateLimitedError(
            f"this token already holds {held} long-polls, the most it may; retry later", 5.0
        )
    changed = False
    if principal.token_id not in state.service.revoked:  # (revoked after it authenticated)
        if principal.expires_at is not None:
            wait = min(wait, max(0.0, principal.expires_at - time.time()))
        changed = await state.service.wait_for_change(env, wait, principal.token_id)
    try:
        await state.authenticate.recheck(principal)
    except UnauthorizedError:
        state.audit.refused(call.event(call.route.action_for(call.request.query), "unauthorized"))
        raise
    return changed


def _encoded(revealed: Revealed, variant: int, fmt: str) -> tuple[bytes, dict[str, str]]:
    """The runtime read's answer: body and headers."""
    env = revealed.env
    headers = {
        **NO_STORE,
        "ETag": rendered_etag(env.id, env.revision, variant),
        "X-Loader-Revision": str(env.revision),
        "Content-Type": "application/json" if fmt == "json" else formats.CONTENT_TYPES[fmt],
        "X-Content-Type-Options": "nosniff",
    }
    if fmt != "json":
        return formats.render(fmt, revealed.values).encode(), headers
    body = {
        "environment": env.name,
        "revision": env.revision,
        "secrets": revealed.values,
        "unset": list(revealed.unset),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), headers


# -- audit ---------------------------------------------------------------------------------


async def list_audit(call: Call[Any]) -> web.StreamResponse:
    await call.state.service.app(call.app_id)
    page = int_param(call, "page", 1, 1, 10**9)
    size = int_param(call, "page_size", 100, 1, MAX_PAGE_SIZE)
    query = call.request.query
    since = None
    if "since" in query:
        try:
            since = parse_iso(query["since"])
        except ValueError:
            raise InvalidRequestError("since must be an ISO 8601 timestamp") from None
        if since.tzinfo is None:
            raise InvalidRequestError("since must carry a timezone (e.g. Z)")
        try:
            since = since.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+07:25 is before the year 1 in UTC
            raise InvalidRequestError("since is out of range") from None
    name = query.get("name")
    if name is not None:
        check_secret_name(name)
    # An empty action= is refused like an unknown one (the document declares the action an
    # enum; schemathesis found an empty value answered as "every action").
    action = query.get("action")
    if action is not None and action not in ACTIONS:
        raise InvalidRequestError(f"action must be one of {', '.join(sorted(ACTIONS))}")
    assert call.principal is not None
    await call.state.audit.flush()
    events, total = await call.state.service.audit_events(
        AuditQuery(
            call.app_id,
            action,
            name,
            since,
            (page - 1) * size,
            size,
            # An environment-bound token sees its environments' events, not app-wide ones.
            environments=call.principal.environments,
        )
    )
    return json_response(
        {
            "events": [event_json(e) for e in events],
            "page": page,
            "page_size": size,
            "total": total,
        },
        headers=NO_STORE,
    )


# -- OAuth client credentials -------------------------------------------------------------


async def oauth_token(call: Call[TokenRequestBody]) -> web.StreamResponse:
    body = call.body
    if body.grant_type == JWT_BEARER:
        return await exchange_workload_token(call)
    if body.grant_type != "client_credentials":
        raise InvalidRequestError(f"grant_type must be client_credentials or {JWT_BEARER}")
    authority = call.state.jwt
    if authority is None:
        raise NotFoundError("OAuth is not enabled on this store")
    record = await call.state.service.credential(body.client_id or "")
    if (
        not verify_secret(body.client_secret or "", record)
        or record is None
        or record.kind != "client"
        or not usable(record, utcnow())
    ):
        call.state.audit.refused(call.event("issue_access_token", "unauthorized"))
        raise UnauthorizedError("invalid client credentials")
    scopes = narrowed(record.scopes, body.scope, "client")
    return issued(call, authority.issue(record, scopes), record.id, record.app_id)


# -- the table -----------------------------------------------------------------------------

_IF_MATCH = Param(
    "If-Match", {"type": "string"}, "Compare-and-set: the secret's current ETag", "header"
)
_PAGE = (
    Param("page", {"type": "integer", "minimum": 1, "maximum": 10**9}, "Page number, from 1"),
    Param(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        "Items per page (default 100)",
    ),
)
_ENV_SECRETS = "/v1/apps/{appId}/environments/{env}/secrets"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/health",
        "health",
        "Liveness",
        health,
        None,
        tag="System",
        response="Health",
        public=True,
    ),
    Route(
        "GET",
        "/v1/ready",
        "ready",
        "Readiness: database, master key and data file checked",
        ops.ready,
        None,
        tag="System",
        response="Readiness",
        errors=(503,),
        public=True,
        description="200 when a database round trip succeeds within a short timeout, the master "
        "key opens a data key, and (SQLite) the data file is the one opened with disk to spare; "
        "else 503 with Retry-After and the failing check's reason code.",
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        ops.metrics,
        None,
        tag="System",
        content_types=("text/plain",),
        public=True,
        description="Requests by route template and status, latency, database errors, "
        "long-poll watchers, audit queue depth. No secret names or values.",
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        "openapi",
        "This document",
        openapi,
        None,
        tag="System",
        public=True,
    ),
    # apps
    Route(
        "GET",
        "/v1/apps",
        "listApps",
        "List apps",
        list_apps,
        "apps:read",
        tag="Apps",
        response="AppList",
        action="list_apps",
    ),
    Route(
        "POST",
        "/v1/apps",
        "createApp",
        "Create an app (with a default environment)",
        create_app,
        "apps:write",
        tag="Apps",
        body=AppBody,
        success=201,
        response="App",
        errors=(409,),
        action="create_app",
        whole_app=True,
    ),
    Route(
        "GET",
        "/v1/apps/{appId}",
        "getApp",
        "Get an app",
        get_app,
        "apps:read",
        tag="Apps",
        response="App",
        errors=(404,),
        action="get_app",
    ),
    Route(
        "DELETE",
        "/v1/apps/{appId}",
        "deleteApp",
        "Delete an app and all its secrets",
        delete_app,
        "apps:write",
        tag="Apps",
        success=204,
        errors=(404,),
        action="delete_app",
        whole_app=True,
    ),
    Route(
        "GET",
        "/v1/apps/{appId}/environments",
        "listEnvironments",
        "List environments",
        list_environments,
        "apps:read",
        tag="Environments",
        response="EnvironmentList",
        errors=(404,),
        action="list_environments",
    ),
    Route(
        "POST",
        "/v1/apps/{appId}/environments",
        "createEnvironment",
        "Create an environment",
        create_environment,
        "apps:write",
        tag="Environments",
        body=EnvironmentBody,
        success=201,
        response="Environment",
        errors=(404, 409),
        action="create_environment",
    ),
    Route(
        "GET",
        "/v1/apps/{appId}/environments/{env}",
        "getEnvironment",
        "Get an environment",
        get_environment,
        "apps:read",
        tag="Environments",
        response="Environment",
        errors=(404,),
        action="get_environment",
    ),
    Route(
        "DELETE",
        "/v1/apps/{appId}/environments/{env}",
        "deleteEnvironment",
        "Delete an environment (not default) and its secrets",
        delete_environment,
        "apps:write",
        tag="Environments",
        success=204,
        errors=(404, 409),
        action="delete_environment",
    ),
    # Spice-compatible
    Route(
        "GET",
        "/v1/apps/{appId}/secrets",
        "listSecrets",
        "List secrets",
        list_secrets_spice,
        "secrets:read",
        response="SecretList",
        errors=(404,),
        spice=True,
        description="Returns all secrets for the specified app. Secret values are always masked.",
        action="list_secrets",
    ),
    Route(
        "POST",
        "/v1/apps/{appId}/secrets",
        "upsertSecret",
        "Create or update a secret",
        upsert_secret_spice,
        "secrets:write",
        body=SpiceSecretBody,
        response="Secret",
        errors=(404, 412),
        params=(_IF_MATCH,),
        spice=True,
        description="Creates a new secret or updates an existing secret with the same name. "
        "The secret value is encrypted at rest.",
        action="upsert_secret",
    ),
    Route(
        "GET",
        "/v1/apps/{appId}/secrets/{secretName}",
        "getSecret",
        "Get a secret",
        get_secret,
        "secrets:read",
        response="Secret",
        errors=(404,),
        spice=True,
        action="get_secret",
    ),
    Route(
        "DELETE",
        "/v1/apps/{appId}/secrets/{secretName}",
        "deleteSecret",
        "Delete a secret",
        delete_secret,
        "secrets:write",
        success=204,
        errors=(404, 412),
        params=(_IF_MATCH,),
        spice=True,
        action="delete_secret",
    ),
    # environments
    Route(
        "GET",
        _ENV_SECRETS,
        "listEnvironmentSecrets",
        "List secrets (paginated)",
        list_secrets,
        "secrets:read",
        response="SecretPage",
        errors=(404,),
        params=_PAGE,
        action="list_secrets",
    ),
    Route(
        "POST",
        _ENV_SECRETS,
        "upsertEnvironmentSecret",
        "Create or update a secret; without a value it is only declared",
        upsert_secret,
        "secrets:write",
        body=SecretBody,
        response="Secret",
        errors=(404, 412),
        params=(_IF_MATCH,),
        action="upsert_secret",
    ),
    Route(
        "GET",
        _ENV_SECRETS + "/{secretName}",
        "getEnvironmentSecret",
        "Get a secret",
        get_secret,
        "secrets:read",
        response="Secret",
        errors=(404,),
        action="get_secret",
    ),
    Route(
        "PATCH",
        _ENV_SECRETS + "/{secretName}",
        "updateEnvironmentSecret",
        "Change a secret's description",
        patch_secret,
        "secrets:write",
        body=DescriptionBody,
        response="Secret",
        errors=(404, 412),
        params=(_IF_MATCH,),
        action="update_secret",
    ),
    Route(
        "DELETE",
        _ENV_SECRETS + "/{secretName}",
        "deleteEnvironmentSecret",
        "Delete a secret",
        delete_secret,
        "secrets:write",
        success=204,
        errors=(404, 412),
        params=(_IF_MATCH,),
        action="delete_secret",
    ),
    Route(
        "PUT",
        _ENV_SECRETS + "/{secretName}/value",
        "setSecretValue",
        "Set a declared secret's value (a new version)",
        put_value,
        "secrets:write",
        body=ValueBody,
        response="Secret",
        errors=(404, 412),
        params=(_IF_MATCH,),
        action="set_value",
    ),
    Route(
        "GET",
        _ENV_SECRETS + "/{secretName}/versions",
        "listSecretVersions",
        "List a secret's versions (metadata only)",
        list_versions,
        "secrets:read",
        response="VersionList",
        errors=(404,),
        action="list_versions",
    ),
    Route(
        "POST",
        _ENV_SECRETS + "/{secretName}/rollback",
        "rollbackSecret",
        "Restore an old version's value as a new version",
        rollback,
        "secrets:write",
        body=RollbackBody,
        response="Secret",
        errors=(404, 412),
        params=(_IF_MATCH,),
        action="rollback_secret",
    ),
    Route(
        "GET",
        "/v1/apps/{appId}/environments/{env}/rendered",
        "renderSecrets",
        "Read an environment's values (the runtime route)",
        rendered,
        rendered_scope,
        response="Rendered",
        errors=(404, 422),
        response_headers=("ETag",),
        content_types=("application/json", "text/plain", "text/x-shellscript"),
        params=(
            Param(
                "mode",
                {"type": "string", "enum": ["full", "preview", "Full", "PreviewOnly"]},
                "full reveals values (secrets:reveal); preview masks them (secrets:read)",
            ),
            Param(
                "names",
                {"type": "string", "maxLength": 4096, "pattern": NAMES_PATTERN},
                "Comma-separated secret names to return (default: all)",
            ),
            Param(
                "format",
                {"type": "string", "enum": list(formats.FORMATS)},
                "Body format (default json)",
            ),
            Param(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 60},
                "Long-poll: with a matching If-None-Match, hold until a change",
            ),
            Param(
                "If-None-Match",
                {"type": "string"},
                "The ETag of the values you hold: 304 while unchanged",
                "header",
            ),
            rollouts.REPORT_PARAM,
        ),
        description="The only route that returns plaintext (mode=full). Cache-Control: "
        "no-store. The ETag never derives from plaintext.",
        action="read_rendered",
    ),
    *rollouts.ROUTES,
    Route(
        "GET",
        "/v1/apps/{appId}/audit",
        "listAuditEvents",
        "Audit log (names, never values)",
        list_audit,
        "apps:write",
        tag="Audit",
        response="AuditList",
        errors=(404,),
        params=(
            Param(
                "action",
                {"type": "string", "enum": sorted(ACTIONS)},
                "Only this action (e.g. reveal, upsert_secret)",
            ),
            Param(
                "name",
                {"type": "string", "maxLength": SECRET_NAME_MAX, "pattern": SECRET_NAME_PATTERN},
                "Only events on this secret",
            ),
            Param("since", {"type": "string", "format": "date-time"}, "Events at or after"),
            *_PAGE,
        ),
        action="list_audit",
    ),
    Route(
        "POST",
        "/oauth/token",
        "issueAccessToken",
        "OAuth 2.0 token endpoint: a short-lived access token (JWT) for client credentials, or "
        "for a workload's JWT (RFC 7523 jwt-bearer grant, checked against the trust policies)",
        oauth_token,
        None,
        tag="Auth",
        body=TokenRequestBody,
        body_types=("application/json", "application/x-www-form-urlencoded"),
        response="AccessToken",
        errors=(401,),
        action="issue_access_token",
    ),
)
assert all(r.action in ACTIONS for r in ROUTES if r.scope is not None), "audit vocabulary"
