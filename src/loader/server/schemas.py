"""Request bodies (strict: wrong types and unknown fields are 400s) and response shapes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from loader.errors import DATABASE_CODES
from loader.names import (
    APP_NAME_MAX,
    APP_NAME_PATTERN,
    ENV_NAME_MAX,
    ENV_NAME_PATTERN,
    SECRET_NAME_MAX,
    SECRET_NAME_PATTERN,
)
from loader.store.fleet import MAX_POLICY, STATES
from loader.workload import JWT_BEARER

MAX_VALUE_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_DESCRIPTION = 1024

_STRICT = ConfigDict(extra="forbid", strict=True)
# Documented here, checked by loader.names so a bad name gets the invalid_secret_name code.
_SECRET_NAME: Any = Field(
    json_schema_extra={"pattern": SECRET_NAME_PATTERN, "maxLength": SECRET_NAME_MAX},
    description="Starts with a letter or underscore; letters, digits and underscores only",
)


class SpiceSecretBody(BaseModel):
    """``POST /v1/apps/{appId}/secrets`` (the Spice API's upsert)."""

    model_config = _STRICT
    name: str = _SECRET_NAME
    value: str = Field(description="Secret value (encrypted at rest; at most 64 KiB of UTF-8)")


class SecretBody(BaseModel):
    """Upsert in an environment; without ``value`` the secret is only declared."""

    model_config = _STRICT
    name: str = _SECRET_NAME
    value: str | None = Field(default=None, description="Omit to declare without a value")
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)


class ValueBody(BaseModel):
    model_config = _STRICT
    value: str


class DescriptionBody(BaseModel):
    model_config = _STRICT
    description: str | None = Field(max_length=MAX_DESCRIPTION)


def whole(value: Any) -> Any:
    """JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field that takes 3.0 as 3.
Whole = Annotated[int, BeforeValidator(whole)]


class RollbackBody(BaseModel):
    model_config = _STRICT
    version: Whole = Field(ge=1, le=2**63 - 1)


class AppBody(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=APP_NAME_PATTERN, min_length=1, max_length=APP_NAME_MAX)


class EnvironmentBody(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=ENV_NAME_PATTERN, min_length=1, max_length=ENV_NAME_MAX)


class TokenRequestBody(BaseModel):
    """``POST /oauth/token``: client credentials (``client_id``, ``client_secret``), or a
    workload's JWT as an authorization grant (RFC 7523: ``assertion``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {"grant_type": {"const": "client_credentials"}},
                    "required": ["client_id", "client_secret"],
                },
                {
                    "properties": {"grant_type": {"const": JWT_BEARER}},
                    "required": ["assertion"],
                },
            ]
        },
    )
    grant_type: str = Field(json_schema_extra={"enum": ["client_credentials", JWT_BEARER]})
    client_id: str | None = Field(default=None, max_length=256, description="client_credentials")
    client_secret: str | None = Field(
        default=None, max_length=256, description="client_credentials"
    )
    assertion: str | None = Field(
        default=None,
        max_length=16384,
        description="jwt-bearer: the workload's JWT (a Kubernetes service-account token, a CI "
        "job's OIDC token) that a trust policy accepts",
    )
    scope: str | None = Field(
        default=None,
        max_length=1024,
        description="Space-separated subset of the scopes the client or policy grants",
    )


class RolloutPolicyBody(BaseModel):
    """``PUT .../rollout``: the restart budget (null: none)."""

    model_config = _STRICT
    max_unavailable: (
        Annotated[str, Field(pattern=r"^([1-9][0-9]{0,5}|1000000|[1-9][0-9]?%|100%)$")]
        | Annotated[int, Field(ge=1, le=MAX_POLICY), BeforeValidator(whole)]
        | None
    ) = Field(
        description="How many runners may restart at once: a count (3) or a percentage of the "
        "live runners ('10%'); null for no budget",
    )


class RestartBody(BaseModel):
    """``POST .../restarts``: a runner asks for a restart slot to move to ``revision``."""

    model_config = _STRICT
    revision: Whole = Field(ge=0, le=2**63 - 1)


_TIMESTAMP = {"type": "string", "format": "date-time"}
_MASKED = {"type": "string", "description": "Always masked with asterisks"}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string"},
            "code": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "invalid_secret_name",
                    "unauthorized",
                    "insufficient_scope",
                    "not_found",
                    "already_exists",
                    "precondition_failed",
                    "payload_too_large",
                    "rate_limited",
                    "internal_error",
                    "unavailable",
                    "audit_unavailable",
                    "idempotency_key_reused",
                    *DATABASE_CODES,
                ],
            },
            "retry_after": {"type": "integer", "minimum": 0},
        },
    },
    "Secret": {
        "type": "object",
        "required": ["id", "name", "value", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "integer", "description": "Unique identifier for the secret"},
            "name": {"type": "string"},
            "value": _MASKED,
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "environment": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "has_value": {"type": "boolean"},
            "version": {"type": "integer", "minimum": 0},
            "etag": {"type": "string"},
            "changed": {
                "type": "boolean",
                "description": "In answers to writes only. false: the secret already had this "
                "value (and description), so nothing changed: no new version, no new revision, "
                "no watcher woken, no app restarted",
            },
        },
    },
    "SecretList": {
        "type": "object",
        "required": ["secrets"],
        "properties": {
            "secrets": {"type": "array", "items": {"$ref": "#/components/schemas/Secret"}}
        },
    },
    "SecretPage": {
        "type": "object",
        "required": ["secrets", "page", "page_size", "total", "total_pages"],
        "properties": {
            "secrets": {"type": "array", "items": {"$ref": "#/components/schemas/Secret"}},
            "page": {"type": "integer", "minimum": 1},
            "page_size": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
            "total_pages": {"type": "integer", "minimum": 0},
        },
    },
    "App": {
        "type": "object",
        "required": ["id", "name", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "created_at": _TIMESTAMP,
        },
    },
    "AppList": {
        "type": "object",
        "required": ["apps"],
        "properties": {"apps": {"type": "array", "items": {"$ref": "#/components/schemas/App"}}},
    },
    "Environment": {
        "type": "object",
        "required": ["name", "app_id", "revision", "created_at"],
        "properties": {
            "name": {"type": "string"},
            "app_id": {"type": "integer"},
            "revision": {"type": "integer", "minimum": 0},
            "created_at": _TIMESTAMP,
        },
    },
    "EnvironmentList": {
        "type": "object",
        "required": ["environments"],
        "properties": {
            "environments": {"type": "array", "items": {"$ref": "#/components/schemas/Environment"}}
        },
    },
    "Rendered": {
        "type": "object",
        "required": ["environment", "revision", "secrets"],
        "properties": {
            "environment": {"type": "string"},
            "revision": {"type": "integer", "minimum": 0},
            "secrets": {"type": "object", "additionalProperties": {"type": "string"}},
            "unset": {"type": "array", "items": {"type": "string"}},
        },
    },
    "VersionList": {
        "type": "object",
        "required": ["versions"],
        "properties": {
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "created_at", "actor"],
                    "properties": {
                        "version": {"type": "integer", "minimum": 1},
                        "created_at": _TIMESTAMP,
                        "actor": {"type": ["string", "null"]},
                        "has_value": {"type": "boolean"},
                    },
                },
            }
        },
    },
    "AuditList": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "at",
                        "token_id",
                        "action",
                        "environment",
                        "name",
                        "outcome",
                        "client",
                    ],
                    "properties": {
                        "at": _TIMESTAMP,
                        "token_id": {"type": ["string", "null"]},
                        "action": {"type": "string"},
                        "environment": {"type": ["string", "null"]},
                        "name": {"type": ["string", "null"]},
                        "names": {"type": "array", "items": {"type": "string"}},
                        "outcome": {"type": "string"},
                        "client": {"type": ["string", "null"]},
                        "count": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "Refusals: how many like this one the client had "
                            "in the interval starting at `at` (1 for everything else)",
                        },
                        "subject": {
                            "type": ["string", "null"],
                            "description": "Workload identity: the verified subject of the "
                            "workload token (token_id is then the trust policy's id)",
                        },
                        "reason": {
                            "type": ["string", "null"],
                            "description": "A refused token exchange: why (a reason code)",
                        },
                    },
                },
            },
            "page": {"type": "integer"},
            "page_size": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
    "AccessToken": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
        },
    },
    "ConsumerList": {
        "type": "object",
        "required": ["environment", "revision", "consumers", "rollout"],
        "properties": {
            "environment": {"type": "string"},
            "revision": {"type": "integer", "minimum": 0, "description": "The newest revision"},
            "consumers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "kind", "state", "last_seen"],
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"type": "string", "enum": ["agent", "runner", "render"]},
                        "host": {"type": "string"},
                        "version": {"type": "string"},
                        "rendered_revision": {"type": ["integer", "null"]},
                        "running_revision": {"type": ["integer", "null"]},
                        "failed_revision": {"type": ["integer", "null"]},
                        "health": {"type": ["string", "null"]},
                        "state": {"type": "string", "enum": list(STATES)},
                        "last_seen": _TIMESTAMP,
                    },
                },
            },
            "rollout": {"$ref": "#/components/schemas/Rollout"},
        },
    },
    "Rollout": {
        "type": "object",
        "required": ["max_unavailable", "slots", "in_use", "counts", "lag", "done", "paused"],
        "properties": {
            "max_unavailable": {"type": ["string", "null"]},
            "slots": {"type": ["integer", "null"], "description": "null: no budget"},
            "in_use": {"type": "integer", "minimum": 0},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "lag": {"type": "integer", "minimum": 0},
            "done": {"type": "boolean"},
            "paused": {"type": "boolean"},
        },
    },
    "RestartGrant": {
        "type": "object",
        "required": ["granted", "reason", "slots", "in_use", "lease_seconds"],
        "properties": {
            "granted": {"type": "boolean"},
            "reason": {"type": "string", "enum": ["granted", "renewed", "budget", "paused"]},
            "slots": {"type": ["integer", "null"]},
            "in_use": {"type": "integer", "minimum": 0},
            "lease_seconds": {"type": "number"},
        },
    },
    "RestartRelease": {
        "type": "object",
        "required": ["released"],
        "properties": {"released": {"type": "boolean", "description": "false: held no slot"}},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}
