"""The OpenAPI 3.1 document, generated from the route table so it cannot drift from it."""

from __future__ import annotations

from typing import Any

from loader import __version__
from loader.names import (
    ENV_NAME_MAX,
    ENV_NAME_PATTERN,
    MAX_ID,
    SECRET_NAME_MAX,
    SECRET_NAME_PATTERN,
)
from loader.server.idempotency import HEADER, KEY_PATTERN
from loader.server.limits import WRITE_METHODS
from loader.server.routing import Param, Route
from loader.server.schemas import RESPONSE_SCHEMAS

_PATH_PARAMS: dict[str, dict[str, Any]] = {
    "appId": {
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "description": "The ID of the app",
    },
    "env": {
        "schema": {"type": "string", "pattern": ENV_NAME_PATTERN, "maxLength": ENV_NAME_MAX},
        "description": "Environment name (every app has `default`)",
    },
    "secretName": {
        "schema": {"type": "string", "pattern": SECRET_NAME_PATTERN, "maxLength": SECRET_NAME_MAX},
        "description": "The name of the secret",
    },
}

_STATUS_TEXT = {
    304: "Not modified (the ETag still matches)",
    400: "Invalid request: bad app id, name, body or query",
    401: "Unauthorized: missing, invalid or expired token",
    403: "Insufficient scope, or the token is bound to another app or environment",
    404: "App, environment or secret not found",
    409: "Already exists",
    412: "Precondition failed: If-Match does not match the current ETag",
    413: "Payload too large (body over 1 MiB or value over 64 KiB)",
    422: "A value cannot be rendered in the requested format, or an Idempotency-Key was reused "
    "for a different request",
    429: "Rate limited: retry after Retry-After seconds",
    500: "Internal server error",
    503: "Unavailable: the database (or the audit) cannot serve now; retry after Retry-After "
    "seconds (the JSON body's code says why)",
}

_ERROR = {"$ref": "#/components/schemas/Error"}
_IDEMPOTENCY_KEY = Param(
    HEADER,
    {"type": "string", "pattern": KEY_PATTERN},
    "Makes a retry safe: the same key and request within 24 h is answered with the first "
    "result (marked Idempotent-Replayed: true), nothing is written twice",
    "header",
)
_RATE_HEADERS = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"},
}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _STATUS_TEXT[status],
        "content": {"application/json": {"schema": _ERROR}},
    }
    if status in (429, 503):
        response["headers"] = _RATE_HEADERS
    return response


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, **_PATH_PARAMS[name]}
        for name in route.path_params
    ]
    writes = route.method in WRITE_METHODS and route.scope is not None
    extra = (_IDEMPOTENCY_KEY,) if writes else ()
    params += [
        {
            "in": p.where,
            "name": p.name,
            "required": p.required,
            "schema": p.schema,
            "description": p.description,
        }
        for p in (*route.params, *extra)
    ]
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        op["description"] = route.description
    if params:
        op["parameters"] = params
    if route.scope is None:
        op["security"] = []
    elif isinstance(route.scope, str):
        op["x-required-scope"] = route.scope
    if route.body is not None:
        schema = route.body.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        op["requestBody"] = {
            "required": True,
            "content": {ct: {"schema": schema} for ct in route.body_types},
        }

    success: dict[str, Any] = {"description": "Success"}
    if route.success != 204:
        content: dict[str, Any] = {}
        for ct in route.content_types:
            if ct == "application/json":
                schema = (
                    {"$ref": f"#/components/schemas/{route.response}"}
                    if route.response
                    else {"type": "object"}
                )
            else:
                schema = {"type": "string"}
            content[ct] = {"schema": schema}
        success["content"] = content
    if route.response_headers:
        success["headers"] = {
            h: {"schema": {"type": "string"}, "description": "Entity tag"}
            for h in route.response_headers
        }
    responses: dict[str, Any] = {str(route.success): success}
    if "If-None-Match" in {p.name for p in route.params}:
        responses["304"] = {"description": _STATUS_TEXT[304]}
    statuses = set(route.errors)
    if route.path_params or route.params or route.body is not None:
        statuses.add(400)
    if route.scope is not None:
        statuses |= {401, 403, 429, 503}
    if writes:
        statuses.add(422)
    if not route.public:
        statuses.add(429)  # its client address is out of refusals
    if route.body is not None:
        statuses.add(413)
    statuses.add(500)
    for status in sorted(statuses):
        responses[str(status)] = _error(status)
    op["responses"] = responses
    return op


# Where a created resource's identifiers come from, for OpenAPI links (stateful clients and
# fuzzers follow them from a create to the operations on what it created).
_LINK_SOURCES: dict[str, dict[str, str]] = {
    "createApp": {"appId": "$response.body#/id", "env": "default"},
    "createEnvironment": {"appId": "$request.path.appId", "env": "$response.body#/name"},
    "upsertEnvironmentSecret": {
        "appId": "$request.path.appId",
        "env": "$request.path.env",
        "secretName": "$response.body#/name",
    },
    "upsertSecret": {"appId": "$request.path.appId", "secretName": "$response.body#/name"},
}


def _links(source: Route, routes: tuple[Route, ...]) -> dict[str, Any]:
    values = _LINK_SOURCES[source.operation_id]
    links = {}
    for target in routes:
        needed = target.path_params
        if not needed or target is source or not set(needed) <= set(values):
            continue
        if source.spice != target.spice and "secretName" in needed:
            continue
        if "secretName" in values and "secretName" not in needed:
            continue
        links[target.operation_id] = {
            "operationId": target.operation_id,
            "parameters": {name: values[name] for name in needed},
        }
    return links


def build(routes: tuple[Route, ...], extra_routes: tuple[Route, ...] = ()) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    everything = (*routes, *extra_routes)
    for route in everything:
        op = _operation(route)
        if route.operation_id in _LINK_SOURCES:
            op["responses"][str(route.success)]["links"] = _links(route, everything)
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "loader secrets store",
            "version": __version__,
            "description": "Spice.ai Cloud-compatible secrets API plus environments, versions, "
            "audit and the runtime read route. Values are encrypted at rest and masked in "
            "every response except rendered?mode=full.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "Secrets", "description": "Manage encrypted app secrets"},
            {"name": "Apps"},
            {"name": "Environments"},
            {"name": "Audit"},
            {"name": "Auth"},
            {"name": "System"},
        ],
        "security": [{"BearerAuth": []}],
        "components": {
            "securitySchemes": {
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A loader token (lt_...) or an OAuth access token (JWT)",
                }
            },
            "schemas": RESPONSE_SCHEMAS,
        },
        "paths": paths,
    }
