"""Records the repository hands out. Plain frozen dataclasses; no values in plaintext."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from loader.crypto import Sealed, WrappedKey


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2024-01-15T10:00:00.000Z``, the Spice API's timestamp shape."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # (-"+00:00")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks a field a change leaves as it is (``None`` means "clear it")."""


@dataclass(frozen=True, slots=True)
class App:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Environment:
    id: int
    app_id: int
    name: str
    revision: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DataKeyRecord:
    id: int
    app_id: int
    env_id: int
    wrapped: WrappedKey


@dataclass(frozen=True, slots=True)
class SecretMeta:
    id: int
    env_id: int
    name: str
    description: str | None
    version: int
    modified_revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def has_value(self) -> bool:
        return self.version > 0

    @property
    def etag(self) -> str:
        return f'"s{self.id}.{self.modified_revision}"'


@dataclass(frozen=True, slots=True)
class SealedValue:
    """A value as stored: sealed under the data key ``data_key_id``."""

    data_key_id: int
    sealed: Sealed


Sealer = Callable[[int, DataKeyRecord], Sealed]
"""Called inside the write transaction with the new version and the env's active data key."""

Matcher = Callable[[int, DataKeyRecord, Sealed], bool]
"""Called inside the write transaction with the current version, its data key and its sealed
value: True when the value being written is that value (the write then makes no version)."""


IfMatch = tuple[str, ...]
"""The ETags an ``If-Match`` header names (``*``: any current version): a write or delete
happens only when the secret's current ETag is one of them."""


@dataclass(frozen=True, slots=True)
class SecretChange:
    """What a write does to one secret, on what condition, and how it is recorded.

    ``seal`` sets a new value (a new version) unless ``matches`` finds it is the current value
    already; ``description`` sets or clears the description (``UNSET`` leaves it);
    ``must_exist`` makes a missing secret a 404 instead of a create; ``if_match`` (when given)
    must name the current ETag. ``actor`` and ``at`` go on the new version and the secret;
    ``audit`` is committed with the write.
    """

    seal: Sealer | None = None
    description: str | _Unset | None = UNSET
    must_exist: bool = False
    matches: Matcher | None = None
    if_match: IfMatch | None = None
    actor: str | None = None
    at: datetime = field(default_factory=utcnow)
    audit: AuditEvent | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    secret: SecretMeta
    created: bool
    revision: int
    changed: bool = True


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A secret's current version and its value, still sealed."""

    name: str
    version: int
    value: SealedValue


@dataclass(frozen=True, slots=True)
class ValueSnapshot:
    """Every set value of one environment at one revision, still sealed."""

    env: Environment
    values: tuple[StoredValue, ...]
    unset: tuple[str, ...]
    data_keys: dict[int, DataKeyRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionMeta:
    version: int
    created_at: datetime
    actor: str | None
    has_value: bool


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A bearer token or an OAuth client: the id is public, only a digest of the secret is kept."""

    id: str
    kind: str  # "token" | "client"
    digest: bytes = field(repr=False)
    scopes: frozenset[str]
    app_id: int | None
    environments: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Workload identity: which signed tokens of an issuer (a Kubernetes cluster, a CI
    provider) are trusted, and for what. A token whose signature verifies against the issuer's
    JWKS, that carries ``audience`` and whose claims match every condition (exact, or a glob)
    is exchanged at ``POST /oauth/token`` for a loader access token with this grant."""

    id: str
    issuer: str
    audience: str
    conditions: tuple[tuple[str, str], ...]  # (claim path, exact value or glob), sorted
    scopes: frozenset[str]
    app_id: int | None
    environments: tuple[str, ...] | None
    ttl: int  # seconds: the longest an access token issued under it lives
    created_at: datetime
    jwks_url: str | None = None
    jwks_file: str | None = None
    description: str | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    action: str
    outcome: str
    token_id: str | None = None
    app_id: int | None = None
    environment: str | None = None
    names: tuple[str, ...] = ()
    client: str | None = None
    id: int | None = None
    count: int = 1  # refusals are counted: one record per client and kind per interval
    subject: str | None = None  # workload identity: the verified subject of the workload token
    reason: str | None = None  # workload identity: why an exchange was refused (a code)


def audit_key(event: AuditEvent) -> tuple[object, ...]:
    """What makes two audit records the same one, counted (refusals per interval, reveals per
    batch): everything but the time (the first one's) and the count."""
    return (
        event.action,
        event.outcome,
        event.token_id,
        event.app_id,
        event.environment,
        event.names,
        event.client,
        event.subject,
        event.reason,
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    app_id: int
    action: str | None = None
    name: str | None = None
    since: datetime | None = None
    offset: int = 0
    limit: int = 100
    environments: tuple[str, ...] | None = None  # only events in these (None: all)
