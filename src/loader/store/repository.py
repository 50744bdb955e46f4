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
  client revoked, and of every trust policy deleted, by this process or another (``loader store
  token revoke`` writes the database directly; other replicas) -- at once, or within
  :data:`REVOCATION_POLL` seconds for SQLite;
* :meth:`Repository.revocation_epoch` tells the cache of token records
  (:mod:`loader.store.tokencache`) whether it may answer: every revocation committed before the
  call has then been announced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

from loader.crypto import Sealed, WrappedKey
from loader.errors import DatabaseUnavailableError
from loader.store import fleet, models, sql
from loader.store.health import DatabaseHealth
from loader.store.records import (
    app_record,
    consumer_record,
    data_key_record,
    env_record,
    secret_record,
    slot_record,
    token_record,
    trust_record,
)

R = TypeVar("R")

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

Resealer = Callable[[models.DataKeyRecord, models.DataKeyRecord, str, int, Sealed], Sealed]
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


class RepositoryBase(RevocationFeed):
    """What both repositories share beyond their revocation listeners: the reads they make
    alike, each one statement of :mod:`loader.store.sql` (``?`` placeholders) run by the
    repository's own ``_fetch`` / ``_fetchrow``."""

    async def _fetch(self, statement: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _fetchrow(self, statement: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _execute(self, statement: str, *args: Any) -> None:
        """One write statement in a transaction of its own."""
        raise NotImplementedError

    async def _retire(self, update: str, item_id: str, now: datetime) -> bool:
        """Revoke a token or delete a trust policy (``update``: ``(now, id)``, ``RETURNING
        id``), announced to the other processes as a revocation."""
        raise NotImplementedError

    async def _fetchkey(self, convert: Callable[[Any], R], statement: str, *args: Any) -> R | None:
        """A record by its key, on every request's path (its environment, a token): the row,
        ``convert``-ed (None: no such row)."""
        row = await self._fetchrow(statement, *args)
        return convert(row) if row else None

    async def probe(self) -> list[models.DataKeyRecord]:
        """One round trip; returns a data key per master key in use (for the key self-test)."""
        return [data_key_record(r) for r in await self._fetch(sql.DATA_KEY_PER_MASTER_KEY)]

    async def list_apps(self, only: int | None = None) -> list[models.App]:
        if only is None:
            return [app_record(r) for r in await self._fetch(sql.LIST_APPS)]
        return [app_record(r) for r in await self._fetch(sql.GET_APP, only)]

    async def get_app(self, app_id: int) -> models.App | None:
        row = await self._fetchrow(sql.GET_APP, app_id)
        return app_record(row) if row else None

    async def list_environments(self, app_id: int) -> list[models.Environment]:
        return [env_record(r) for r in await self._fetch(sql.LIST_ENVIRONMENTS, app_id)]

    async def get_environment(self, app_id: int, name: str) -> models.Environment | None:
        return await self._fetchkey(env_record, sql.GET_ENVIRONMENT, app_id, name)

    async def get_secret(self, env_id: int, name: str) -> models.SecretMeta | None:
        row = await self._fetchrow(sql.GET_SECRET, env_id, name)
        return secret_record(row) if row else None

    async def get_token(self, token_id: str) -> models.TokenRecord | None:
        return await self._fetchkey(token_record, sql.GET_TOKEN, token_id)

    async def list_tokens(self) -> list[models.TokenRecord]:
        return [token_record(r) for r in await self._fetch(sql.LIST_TOKENS)]

    async def create_token(self, record: models.TokenRecord) -> None:
        await self._execute(sql.INSERT_TOKEN, *sql.token_params(record, self._ts))

    async def revoke_token(self, token_id: str, now: datetime) -> bool:
        return await self._retire(sql.REVOKE_TOKEN, token_id, now)

    async def count_tokens(self) -> int:
        return int((await self._fetchrow(sql.COUNT_TOKENS))[0])

    async def list_data_keys(self) -> list[models.DataKeyRecord]:
        return [data_key_record(r) for r in await self._fetch(sql.DATA_KEYS)]

    async def get_trust_policy(self, policy_id: str) -> models.TrustPolicy | None:
        row = await self._fetchrow(sql.GET_TRUST_POLICY, policy_id)
        return trust_record(row) if row else None

    async def create_trust_policy(self, policy: models.TrustPolicy) -> None:
        await self._execute(sql.INSERT_TRUST_POLICY, *sql.trust_params(policy, self._ts))

    async def delete_trust_policy(self, policy_id: str, now: datetime) -> bool:
        return await self._retire(sql.DELETE_TRUST_POLICY, policy_id, now)

    async def list_trust_policies(self, issuer: str | None = None) -> list[models.TrustPolicy]:
        if issuer is None:
            return [trust_record(r) for r in await self._fetch(sql.LIST_TRUST_POLICIES)]
        return [trust_record(r) for r in await self._fetch(sql.TRUST_POLICIES_OF_ISSUER, issuer)]

    async def get_rollout_policy(self, env_id: int) -> str | None:
        row = await self._fetchrow(sql.GET_POLICY, env_id)
        return str(row[0]) if row else None

    async def list_consumers(self, env_id: int, since: datetime) -> list[fleet.Consumer]:
        rows = await self._fetch(sql.CONSUMERS_OF_ENVIRONMENT, env_id, self._ts(since))
        return [consumer_record(r) for r in rows]

    async def live_consumers(self, since: datetime) -> list[fleet.LiveConsumer]:
        rows = await self._fetch(sql.LIVE_CONSUMERS, self._ts(since))
        return [
            fleet.LiveConsumer(consumer_record(r), r["app_id"], r["env_name"], r["newest"])
            for r in rows
        ]

    async def list_slots(self, env_id: int, now: datetime) -> list[fleet.Slot]:
        return [slot_record(r) for r in await self._fetch(sql.LIST_SLOTS, env_id, self._ts(now))]

    @staticmethod
    def _ts(value: datetime) -> Any:
        """A timestamp as this backend stores it (SQLite: ISO text; PostgreSQL: as it is)."""
        return value


class Repository(Protocol):
    backend: str
    health: DatabaseHealth
    schema_change: SchemaChange

    async def close(self) -> None: ...

    # health (``/v1/ready``)
    async def probe(self) -> list[models.DataKeyRecord]:
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

    async def revocation_epoch(self) -> int | None:
        """Once this returns, every revocation committed before the call has been announced to
        the revocation listeners -- so a token record read since, and not announced revoked, is
        still good. The number changes whenever announcements may have been missed in between
        (a lost LISTEN connection): what was read before is then to be read again. None: no such
        promise can be made now (not listening); read the database."""
        ...

    # apps and environments
    async def create_app(self, name: str, now: datetime, new_key: KeyWrapper) -> models.App: ...
    async def list_apps(self, only: int | None = None) -> list[models.App]: ...
    async def get_app(self, app_id: int) -> models.App | None: ...
    async def delete_app(self, app_id: int) -> bool: ...
    async def create_environment(
        self, app_id: int, name: str, now: datetime, new_key: KeyWrapper
    ) -> models.Environment: ...
    async def list_environments(self, app_id: int) -> list[models.Environment]: ...
    async def get_environment(self, app_id: int, name: str) -> models.Environment | None: ...
    async def delete_environment(self, app_id: int, name: str) -> bool: ...
    async def get_revisions(self, env_ids: Sequence[int]) -> dict[int, int]: ...

    # secrets
    async def list_secrets(
        self, env_id: int, offset: int, limit: int
    ) -> tuple[list[models.SecretMeta], int]: ...
    async def get_secret(self, env_id: int, name: str) -> models.SecretMeta | None: ...
    async def write_secret(
        self, env: models.Environment, name: str, change: models.SecretChange, max_versions: int
    ) -> models.WriteResult:
        """``change`` in one transaction; versions past ``max_versions`` lose their value."""
        ...

    async def delete_secret(
        self,
        env: models.Environment,
        name: str,
        if_match: models.IfMatch | None,
        audit: models.AuditEvent | None,
    ) -> int: ...
    async def read_values(
        self, env: models.Environment, names: Sequence[str] | None
    ) -> models.ValueSnapshot: ...
    async def list_versions(self, env_id: int, name: str) -> list[models.VersionMeta] | None: ...
    async def get_version(
        self, env_id: int, name: str, version: int
    ) -> tuple[models.SealedValue, models.DataKeyRecord] | None: ...

    # tokens and OAuth clients
    async def create_token(self, record: models.TokenRecord) -> None: ...
    async def get_token(self, token_id: str) -> models.TokenRecord | None: ...
    async def list_tokens(self) -> list[models.TokenRecord]: ...
    async def revoke_token(self, token_id: str, now: datetime) -> bool: ...
    async def count_tokens(self) -> int: ...

    # trust policies (workload identity); a deleted one is announced like a revoked token
    async def create_trust_policy(self, policy: models.TrustPolicy) -> None: ...
    async def get_trust_policy(self, policy_id: str) -> models.TrustPolicy | None: ...
    async def list_trust_policies(self, issuer: str | None = None) -> list[models.TrustPolicy]: ...
    async def delete_trust_policy(self, policy_id: str, now: datetime) -> bool: ...

    # audit
    async def append_audit(self, events: Sequence[models.AuditEvent]) -> None: ...
    async def list_audit(self, query: models.AuditQuery) -> tuple[list[models.AuditEvent], int]: ...

    # consumers and the restart budget (:mod:`loader.store.fleet`)
    async def upsert_consumers(self, consumers: Sequence[fleet.Consumer]) -> None:
        """Record reports in one transaction (a report older than the stored one is skipped)."""
        ...

    async def list_consumers(self, env_id: int, since: datetime) -> list[fleet.Consumer]: ...
    async def live_consumers(self, since: datetime) -> list[fleet.LiveConsumer]: ...
    async def forget_consumers(self, before: datetime) -> int: ...
    async def get_rollout_policy(self, env_id: int) -> str | None: ...
    async def set_rollout_policy(self, env_id: int, max_unavailable: str | None) -> None: ...
    async def acquire_slot(
        self, consumer: fleet.Consumer, revision: int, lease: timedelta, live_since: datetime
    ) -> fleet.Grant:
        """Record ``consumer``'s report and grant (or renew) it a restart slot if the budget
        allows, in one transaction that no other grant for the environment runs beside."""
        ...

    async def release_slot(self, consumer: fleet.Consumer) -> bool:
        """Record ``consumer``'s report and free its slot (True if it held one)."""
        ...

    async def list_slots(self, env_id: int, now: datetime) -> list[fleet.Slot]: ...

    # keys
    async def list_data_keys(self) -> list[models.DataKeyRecord]: ...
    async def rewrap_data_key(
        self, data_key_id: int, expected_master_key_id: str, wrapped: WrappedKey
    ) -> bool: ...
    async def reencrypt_environment(
        self, env_id: int, new_key: KeyWrapper, reseal: Resealer
    ) -> int: ...
