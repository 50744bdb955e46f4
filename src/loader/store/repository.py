"""The persistence interface the store service is written against.

Two implementations: :mod:`loader.store.sqlite` (embedded default) and
:mod:`loader.store.postgres` (several replicas). Both promise the same semantics:

* every write is one transaction; every change to an environment bumps its ``revision`` by one
  in that transaction (revisions are gap-free and strictly increasing per environment);
* ``If-Match`` (``change.if_match``) is checked inside the write transaction: a mismatch raises
  :class:`~loader.errors.PreconditionFailedError` and changes nothing;
* values arrive sealed (the :data:`~loader.store.models.Sealer` runs inside the transaction,
  with the version number the AAD needs) and leave sealed: plaintext never reaches the database;
* ``on_commit`` listeners (:meth:`Repository.subscribe`) hear ``(env_id, revision)`` after each
  committed change, including, for PostgreSQL, changes committed by other replicas;
* revocation listeners (:meth:`Repository.subscribe_revocations`) hear the id of every token or
  client revoked, by this process or another (``loader store token revoke`` writes the database
  directly; other replicas) -- at once, or within :data:`REVOCATION_POLL` seconds for SQLite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from loader.crypto import Sealed, WrappedKey
from loader.errors import DatabaseUnavailableError
from loader.store.health import DatabaseHealth
from loader.store.models import (
    App,
    AuditEvent,
    AuditQuery,
    DataKeyRecord,
    Environment,
    IfMatch,
    SealedValue,
    SecretChange,
    SecretMeta,
    TokenRecord,
    ValueSnapshot,
    VersionMeta,
    WriteResult,
)

KeyWrapper = Callable[[int, int], WrappedKey]
"""Makes a new wrapped data key for ``(app_id, env_id)``; runs inside the transaction."""

ChangeListener = Callable[[int, int], None]
"""Hears ``(env_id, revision)`` after a committed change."""

RevocationListener = Callable[[str], None]
"""Hears the id of a token or OAuth client after its revocation is committed."""

REVOCATION_POLL = 0.5
"""How often a SQLite store looks for commits by other processes (a revocation by the CLI)."""

REVOCATION_SKEW = timedelta(minutes=5)
"""How far back a resync looks for revocations (clocks of hosts and processes differ)."""

Resealer = Callable[[DataKeyRecord, DataKeyRecord, str, int, Sealed], Sealed]
"""``(old_key, new_key, name, version, sealed) -> sealed``: re-encrypts one stored value."""


class SchemaChange(NamedTuple):
    """What opening the database did to its schema: version ``before`` -> ``after``."""

    before: int
    after: int


class RevocationFeed:
    """What both repositories share for their revocation listeners."""

    def __init__(self) -> None:
        self._revocation_listeners: list[RevocationListener] = []

    def subscribe_revocations(self, listener: RevocationListener) -> None:
        self._revocation_listeners.append(listener)

    def _announce_revoked(self, token_ids: Sequence[str]) -> None:
        for token_id in token_ids:
            for listener in self._revocation_listeners:
                listener(token_id)


class Repository(Protocol):
    backend: str
    health: DatabaseHealth
    schema_change: SchemaChange

    async def close(self) -> None: ...

    # health (``/v1/ready``)
    async def probe(self) -> list[DataKeyRecord]:
        """One round trip; returns a data key per master key in use (for the key self-test)."""
        ...

    def file_problem(self) -> DatabaseUnavailableError | None:
        """SQLite: the file at the path is no longer the one opened. PostgreSQL: None."""
        ...

    def free_bytes(self) -> int | None:
        """Free space where the database lives (None when the store cannot know)."""
        ...

    def subscribe(self, listener: ChangeListener) -> None: ...

    def subscribe_revocations(self, listener: RevocationListener) -> None: ...

    async def watch_changes(self, reconnected: Callable[[], Awaitable[None]]) -> None:
        """Follow changes and revocations made by other processes until cancelled."""
        ...

    # apps and environments
    async def create_app(self, name: str, now: datetime, new_key: KeyWrapper) -> App: ...
    async def list_apps(self, only: int | None = None) -> list[App]: ...
    async def get_app(self, app_id: int) -> App | None: ...
    async def delete_app(self, app_id: int) -> bool: ...
    async def create_environment(
        self, app_id: int, name: str, now: datetime, new_key: KeyWrapper
    ) -> Environment: ...
    async def list_environments(self, app_id: int) -> list[Environment]: ...
    async def get_environment(self, app_id: int, name: str) -> Environment | None: ...
    async def delete_environment(self, app_id: int, name: str) -> bool: ...
    async def get_revisions(self, env_ids: Sequence[int]) -> dict[int, int]: ...

    # secrets
    async def list_secrets(
        self, env_id: int, offset: int, limit: int
    ) -> tuple[list[SecretMeta], int]: ...
    async def get_secret(self, env_id: int, name: str) -> SecretMeta | None: ...
    async def write_secret(
        self, env: Environment, name: str, change: SecretChange, max_versions: int
    ) -> WriteResult:
        """``change`` in one transaction; versions past ``max_versions`` lose their value."""
        ...

    async def delete_secret(
        self, env: Environment, name: str, if_match: IfMatch | None, audit: AuditEvent | None
    ) -> int: ...
    async def read_values(self, env: Environment, names: Sequence[str] | None) -> ValueSnapshot: ...
    async def list_versions(self, env_id: int, name: str) -> list[VersionMeta] | None: ...
    async def get_version(
        self, env_id: int, name: str, version: int
    ) -> tuple[SealedValue, DataKeyRecord] | None: ...

    # tokens and OAuth clients
    async def create_token(self, record: TokenRecord) -> None: ...
    async def get_token(self, token_id: str) -> TokenRecord | None: ...
    async def list_tokens(self) -> list[TokenRecord]: ...
    async def revoke_token(self, token_id: str, now: datetime) -> bool: ...
    async def count_tokens(self) -> int: ...

    # audit
    async def append_audit(self, events: Sequence[AuditEvent]) -> None: ...
    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]: ...

    # keys
    async def list_data_keys(self) -> list[DataKeyRecord]: ...
    async def rewrap_data_key(
        self, data_key_id: int, expected_master_key_id: str, wrapped: WrappedKey
    ) -> bool: ...
    async def reencrypt_environment(
        self, env_id: int, new_key: KeyWrapper, reseal: Resealer
    ) -> int: ...
