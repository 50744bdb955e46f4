"""PostgreSQL (asyncpg): several store replicas on one database, one source of truth.

Same semantics as :mod:`loader.store.sqlite`, plus fan-out: every change sends
``NOTIFY loader_changes`` inside its transaction (delivered on commit) with the app id,
environment id and revision -- never a value -- and each replica LISTENs on a dedicated
connection and wakes its own long-poll watchers. If that connection drops, the replica
reconnects and re-checks the revisions of everything watched, so no change is missed.
A revocation sends ``NOTIFY loader_revocations`` with the token id the same way (the CLI's
``token revoke`` too); after a reconnect, the replica re-reads the recent revocations. The same
notifications drop the replica's in-memory environment records (:mod:`loader.store.envcache`).

Writes to one environment lock its row first (``SELECT ... FOR UPDATE``), so revisions are
gap-free and strictly increasing however many replicas write at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from loader.backoff import Backoff, Outage
from loader.crypto import Sealed, WrappedKey
from loader.errors import (
    AlreadyExistsError,
    ConfigError,
    DatabaseUnavailableError,
    NotFoundError,
    nobody_listening,
)
from loader.store import migrations, sql
from loader.store.envcache import EnvironmentCache
from loader.store.fleet import Consumer, Grant, decide
from loader.store.health import DatabaseHealth, DatabaseTimeouts
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
    StoredValue,
    ValueSnapshot,
    VersionMeta,
    WriteResult,
    utcnow,
)
from loader.store.records import (
    audit_record,
    data_key_record,
    env_record,
    secret_record,
)
from loader.store.repository import (
    REVOCATION_SKEW,
    ChangeListener,
    KeyWrapper,
    RepositoryBase,
    Resealer,
    SchemaChange,
)
from loader.store.writeplan import compares_value, plan_delete, plan_write

T = TypeVar("T")
log = logging.getLogger("loader.store")
_q = sql.numbered  # the shared SQL's ``?`` placeholders as ``$n``


def _same(value: datetime) -> datetime:
    """Timestamps go to PostgreSQL as they are (``timestamptz``)."""
    return value


CHANNEL = "loader_changes"
REVOCATIONS = "loader_revocations"
MIGRATION_LOCK = 0x10ADE5  # pg_advisory_lock key: one replica migrates at a time
# Restart-slot grants of one environment, one at a time across replicas (a transaction lock in
# its own key space, beside the migration lock's).
_SLOT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('loader.restart_slots', $1))"
_BUMP = (
    "WITH e AS (UPDATE environments SET revision = revision + 1 WHERE id = $1 "
    "RETURNING app_id, revision, data_key_id) "
    "SELECT revision, data_key_id, pg_notify($2, json_build_object("
    "'app', app_id, 'env', $1::bigint, 'revision', revision)::text) FROM e"
)
# The secret being written (if any) beside the environment's data key, read after the lock.
_CURRENT_AND_KEY = (
    "SELECT k.id AS key_id, k.master_key_id, k.nonce AS key_nonce, k.wrapped, "
    "s.id, s.env_id, s.name, s.description, s.version, s.modified_revision, s.created_at, "
    "s.updated_at FROM data_keys k LEFT JOIN secrets s ON s.env_id = $1 AND s.name = $2 "
    "WHERE k.id = $3"
)
# The same, with the current value and its data key (to tell a write of the same value).
_CURRENT_VALUE_AND_KEY = (
    "SELECT k.id AS key_id, k.master_key_id, k.nonce AS key_nonce, k.wrapped, "
    "s.id, s.env_id, s.name, s.description, s.version, s.modified_revision, s.created_at, "
    "s.updated_at, v.nonce AS value_nonce, v.ciphertext, vk.id AS value_key_id, "
    "vk.env_id AS value_key_env_id, vk.master_key_id AS value_master_key_id, "
    "vk.nonce AS value_key_nonce, vk.wrapped AS value_key_wrapped "
    "FROM data_keys k LEFT JOIN secrets s ON s.env_id = $1 AND s.name = $2 "
    "LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version "
    "LEFT JOIN data_keys vk ON vk.id = v.data_key_id "
    "WHERE k.id = $3"
)


class _Tx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.changes: list[tuple[int, int]] = []

    async def bump(self, env_id: int) -> int:
        return (await self.bump_locked(env_id))[0]

    async def bump_locked(self, env_id: int) -> tuple[int, int | None]:
        """Take the environment's next revision and announce it at commit, in one round trip
        (the row lock serialises the environment's writers). -> (revision, data key id)."""
        row = await self.conn.fetchrow(_BUMP, env_id, CHANNEL)
        if row is None:
            raise NotFoundError("environment not found")
        revision = int(row["revision"])
        self.changes.append((env_id, revision))
        return revision, row["data_key_id"]

    async def audit(self, event: AuditEvent | None) -> None:
        if event is not None:
            await _insert_audit(self.conn, [event])


async def _insert_audit(conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> None:
    await conn.executemany(_q(sql.INSERT_AUDIT), sql.audit_params(events, _same))


class _Unchanged(Exception):
    """Control flow: a write that changes nothing rolls back its revision."""

    def __init__(self, result: WriteResult) -> None:
        self.result = result


def _write_statement(
    env_id: int,
    name: str,
    current: SecretMeta | None,
    description: str | None,
    version: int,
    revision: int,
    now: datetime,
    sealed: Sealed | None,
    key_id: int | None,
    actor: str | None,
    max_versions: int,
    audit: AuditEvent | None,
) -> tuple[str, list[Any]]:
    """One statement for every row a secret write touches (the secret, its new version, the
    values pruned past ``max_versions``, the audit record). The SQL text depends only on the
    shape of the write, so asyncpg's statement cache holds a handful of them. Values only ever
    travel as parameters: ``p`` appends one and returns its ``$n`` (hence the S608 waivers)."""
    args: list[Any] = []

    def p(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if current is None:
        ctes = [
            "s AS (INSERT INTO secrets (env_id, name, description, version, modified_revision, "  # noqa: S608
            f"created_at, updated_at) VALUES ({p(env_id)}, {p(name)}, {p(description)}, "
            f"{p(version)}, {p(revision)}, {p(now)}, {p(now)}) "
            # The environment's row lock already serialises its writers; ON CONFLICT keeps the
            # insert race-safe on its own all the same.
            "ON CONFLICT (env_id, name) DO UPDATE SET description = EXCLUDED.description, "
            "version = EXCLUDED.version, modified_revision = EXCLUDED.modified_revision, "
            "updated_at = EXCLUDED.updated_at RETURNING id, created_at)"
        ]
    else:
        ctes = [
            f"s AS (UPDATE secrets SET description = {p(description)}, version = {p(version)}, "  # noqa: S608
            f"modified_revision = {p(revision)}, updated_at = {p(now)} "
            f"WHERE id = {p(current.id)} RETURNING id, created_at)"
        ]
    if sealed is not None:
        ctes.append(
            "v AS (INSERT INTO secret_versions (secret_id, version, created_at, actor, "  # noqa: S608
            f"data_key_id, nonce, ciphertext) VALUES ((SELECT id FROM s), {p(version)}, "
            f"{p(now)}, {p(actor)}, {p(key_id)}, {p(sealed.nonce)}, {p(sealed.ciphertext)}))"
        )
        if current is not None:
            ctes.append(
                "pruned AS (UPDATE secret_versions SET data_key_id = NULL, nonce = NULL, "  # noqa: S608
                f"ciphertext = NULL WHERE secret_id = {p(current.id)} "
                f"AND version <= {p(version - max_versions)} AND ciphertext IS NOT NULL)"
            )
    if audit is not None:
        ctes.append(
            "a AS (INSERT INTO audit_events (at, token_id, app_id, environment, names, action, "  # noqa: S608
            f"outcome, client, subject) VALUES ({p(audit.at)}, {p(audit.token_id)}, "
            f"{p(audit.app_id)}, {p(audit.environment)}, {p(','.join(audit.names))}, "
            f"{p(audit.action)}, {p(audit.outcome)}, {p(audit.client)}, {p(audit.subject)}))"
        )
    return "WITH " + ", ".join(ctes) + " SELECT id, created_at FROM s", args  # noqa: S608


async def _new_data_key(
    tx: _Tx, app_id: int, env_id: int, now: datetime, new_key: KeyWrapper
) -> int:
    wrapped = new_key(app_id, env_id)
    key = (env_id, wrapped.master_key_id, wrapped.nonce, wrapped.ciphertext, now)
    key_id = await tx.conn.fetchval(_q(sql.INSERT_DATA_KEY), *key)
    await tx.conn.execute(_q(sql.SET_DATA_KEY), key_id, env_id)
    return int(key_id)


async def _insert_environment(
    tx: _Tx, app_id: int, name: str, now: datetime, new_key: KeyWrapper
) -> Environment:
    env_id = await tx.conn.fetchval(_q(sql.INSERT_ENVIRONMENT), app_id, name, now)
    if env_id is None:
        raise AlreadyExistsError(f"environment {name!r} already exists")
    await _new_data_key(tx, app_id, env_id, now, new_key)
    return Environment(id=int(env_id), app_id=app_id, name=name, revision=0, created_at=now)


class PostgresRepository(RepositoryBase):
    backend = "postgresql"

    def __init__(
        self, url: str, pool: asyncpg.Pool, timeouts: DatabaseTimeouts | None = None
    ) -> None:
        super().__init__()
        self.url = url
        self.pool = pool
        self.timeouts = timeouts or DatabaseTimeouts()
        self.health = DatabaseHealth()
        self.schema_change = SchemaChange(0, 0)
        self._listeners: list[ChangeListener] = []
        # Bumped at every LISTEN that is up; None while not listening (revocation_epoch).
        self._epoch: int | None = None
        self._listens = 0
        # Environment records by (app id, name), kept under the same epoch and dropped by the
        # same announcements as the watchers hear (first, before any watcher wakes).
        self.environments = EnvironmentCache(super().get_environment, lambda: self._epoch)
        self._listeners.append(self.environments.changed)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = False,
        timeouts: DatabaseTimeouts | None = None,
        application_name: str = "loader-store",
    ) -> PostgresRepository:
        timeouts = timeouts or DatabaseTimeouts()
        try:
            pool = await asyncpg.create_pool(
                url,
                # No connection floor: asyncpg would re-dial it in the background during an
                # outage, logging a traceback each time. Connections open on demand.
                min_size=0,
                max_size=10,
                timeout=timeouts.acquire,  # connecting
                command_timeout=timeouts.statement,
                reset=_keep_session,
                server_settings={"application_name": application_name},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise ConfigError(
                f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}"
            ) from None
        assert pool is not None
        repo = cls(url, pool, timeouts)
        try:
            async with pool.acquire() as conn:
                repo.schema_change = await _migrate(conn, apply=migrate)
        except BaseException:
            await repo.close()
            raise
        return repo

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), self.timeouts.acquire)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.pool.terminate()  # the server is gone or frozen: do not wait on it

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def _announce(self, changes: Sequence[tuple[int, int]]) -> None:
        for env_id, revision in changes:
            for listener in self._listeners:
                listener(env_id, revision)

    # -- health --------------------------------------------------------------------------------

    def file_problem(self) -> DatabaseUnavailableError | None:
        return None

    def free_bytes(self) -> int | None:
        return None

    # -- fan-out ---------------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            self._announce([(int(data["env"]), int(data["revision"]))])
        except (ValueError, KeyError, TypeError):
            self.environments.clear()  # whatever it meant to change is read again
            log.warning("ignoring a malformed change notification")

    def _on_revoke(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._announce_revoked([payload])

    async def _revoked_since(self, since: datetime) -> None:
        """Announce the revocations since ``since`` (those a lost LISTEN could have missed).
        On a pool connection: the LISTEN connection only ever LISTENs. Best effort: a request
        held meanwhile still re-checks its token when its wait ends."""
        try:
            rows = await self._fetch(sql.REVOKED_SINCE, since, since)
        except Exception as exc:  # the database is down again: the next reconnect re-reads
            log.warning("could not re-read revocations after reconnecting: %s", exc)
            return
        self._announce_revoked([str(r["id"]) for r in rows])

    async def revocation_epoch(self) -> int | None:
        """Every replica hears every revocation by NOTIFY, delivered to its LISTEN connection
        when the revoking transaction commits (the revoking replica announces its own at once).
        While that connection is up nothing is missed; a new one is a new epoch (what was read
        before it is read again); while there is none, None. (A connection that is lost without
        a word -- half-open -- is noticed by the check every 15 s.)"""
        return self._epoch

    async def watch_changes(self, reconnected: Callable[[], Awaitable[None]]) -> None:
        """LISTEN until cancelled; after every (re)connect, re-check what is being watched and
        re-read the revocations that could have been missed while not listening. Reconnects
        with the followers' backoff (:mod:`loader.backoff`); logs once per distinct trouble
        and once when it is over, not every retry."""
        backoff = Backoff(0.1, 5.0)
        outage = Outage(log, "change notifications")
        listening_since = utcnow()  # requests may be held before the first LISTEN is up
        while True:
            try:
                conn = await asyncpg.connect(
                    self.url,
                    timeout=self.timeouts.acquire,
                    server_settings={"application_name": "loader-listener"},
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                delay = backoff.next(unreachable=nobody_listening(exc))
                outage.failed(f"change notifications: cannot connect ({exc})", delay)
                await asyncio.sleep(delay)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(functools.partial(_set_event, lost))
            try:
                started = utcnow()
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.add_listener(REVOCATIONS, self._on_revoke)
                self._listens += 1
                self._epoch = self._listens
                backoff.reset()
                outage.recovered()
                await self._revoked_since(listening_since - REVOCATION_SKEW)
                listening_since = started
                await reconnected()
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), 15)
                    except TimeoutError:
                        try:  # a half-open connection shows up here
                            await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
                        except (
                            OSError,
                            TimeoutError,
                            asyncpg.PostgresError,
                            asyncpg.InterfaceError,
                        ):
                            lost.set()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("change notifications: %s", exc)
            finally:
                self._epoch = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
            delay = backoff.next()
            outage.failed("change notifications: the connection was lost", delay)
            await asyncio.sleep(delay)

    # -- unit-of-work plumbing -------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self, write: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (waiting at most the acquire timeout); a failure of the server,
        the network or a timeout leaves as DatabaseUnavailableError, recorded in ``health``."""
        with self.health.watch(_fault, write):
            async with asyncio.timeout(self.timeouts.acquire):  # (cheaper than acquire(timeout=))
                conn = await self.pool.acquire()
            try:
                yield conn
            except _IN_DOUBT:
                # Timed out or cut off mid-call: the connection is in doubt. Close it now (the
                # server rolls back) rather than wait on a frozen server to release it.
                conn.terminate()
                raise
            finally:
                await self.pool.release(conn)

    async def _write(self, fn: Callable[[_Tx], Awaitable[T]]) -> T:
        async with self._connection(write=True) as conn, _transaction(conn):
            tx = _Tx(conn)
            result = await fn(tx)
        self._announce(tx.changes)
        return result

    async def _fetch(self, statement: str, *args: Any) -> list[Any]:
        """Rows of one statement of :mod:`loader.store.sql` (``?`` placeholders)."""
        async with self._connection() as conn:
            return list(await conn.fetch(_q(statement), *args))

    async def _fetchrow(self, statement: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchrow(_q(statement), *args)

    # -- apps and environments -------------------------------------------------------------

    async def create_app(self, name: str, now: datetime, new_key: KeyWrapper) -> App:
        async def unit(tx: _Tx) -> App:
            app_id = await tx.conn.fetchval(_q(sql.INSERT_APP), name, now)
            if app_id is None:
                raise AlreadyExistsError(f"an app named {name!r} already exists")
            await _insert_environment(tx, int(app_id), "default", now, new_key)
            return App(id=int(app_id), name=name, created_at=now)

        return await self._write(unit)

    async def delete_app(self, app_id: int) -> bool:
        async def unit(tx: _Tx) -> bool:
            # The app's row first: an environment being created in it (its insert holds a key
            # share lock on the row) commits before the list below, so it is announced too --
            # every environment the delete removes is announced (replicas drop its record).
            await tx.conn.execute(_q(sql.APP_EXISTS) + " FOR UPDATE", app_id)
            envs = await tx.conn.fetch(_q(sql.ENVIRONMENT_IDS_OF_APP) + " FOR UPDATE", app_id)
            for row in envs:
                await tx.bump(int(row["id"]))
            status = await tx.conn.execute(_q(sql.DELETE_APP), app_id)
            return bool(status != "DELETE 0")

        return await self._write(unit)

    async def create_environment(
        self, app_id: int, name: str, now: datetime, new_key: KeyWrapper
    ) -> Environment:
        async def unit(tx: _Tx) -> Environment:
            if await tx.conn.fetchval(_q(sql.APP_EXISTS), app_id) is None:
                raise NotFoundError("app not found")
            return await _insert_environment(tx, app_id, name, now, new_key)

        return await self._write(unit)

    async def delete_environment(self, app_id: int, name: str) -> bool:
        async def unit(tx: _Tx) -> bool:
            env_id = await tx.conn.fetchval(_q(sql.ENVIRONMENT_ID) + " FOR UPDATE", app_id, name)
            if env_id is None:
                return False
            await tx.bump(int(env_id))
            await tx.conn.execute(_q(sql.DELETE_ENVIRONMENT), env_id)
            return True

        return await self._write(unit)

    async def get_environment(self, app_id: int, name: str) -> Environment | None:
        """From memory while listening (:mod:`loader.store.envcache`), else the database."""
        return await self.environments.get(app_id, name)

    async def get_revisions(self, env_ids: Sequence[int]) -> dict[int, int]:
        rows = await self._fetch(
            "SELECT id, revision FROM environments WHERE id = ANY(?::bigint[])", list(env_ids)
        )
        return {int(r["id"]): int(r["revision"]) for r in rows}

    # -- secrets ---------------------------------------------------------------------------

    async def list_secrets(
        self, env_id: int, offset: int, limit: int
    ) -> tuple[list[SecretMeta], int]:
        async with (
            self._connection() as conn,
            _transaction(conn, isolation="repeatable_read", readonly=True),
        ):
            total = await conn.fetchval(_q(sql.COUNT_SECRETS), env_id)
            rows = await conn.fetch(_q(sql.LIST_SECRETS), env_id, limit, offset)
        return [secret_record(r) for r in rows], int(total)

    async def write_secret(
        self, env: Environment, name: str, change: SecretChange, max_versions: int
    ) -> WriteResult:
        now = change.at

        async def unit(tx: _Tx) -> WriteResult:
            # Four round trips in the transaction: lock+bump+notify, read, write, commit.
            revision, key_id = await tx.bump_locked(env.id)
            compare = change.seal is not None and change.matches is not None
            query = _CURRENT_VALUE_AND_KEY if compare else _CURRENT_AND_KEY
            row = await tx.conn.fetchrow(query, env.id, name, key_id)
            if row is None:
                raise NotFoundError("environment not found")
            current = secret_record(row) if row["id"] is not None else None
            same = False
            if compares_value(current, change) and row["ciphertext"] is not None:
                assert change.matches is not None and current is not None
                stored_key = DataKeyRecord(
                    id=row["value_key_id"],
                    app_id=env.app_id,
                    env_id=row["value_key_env_id"],
                    wrapped=WrappedKey(
                        row["value_master_key_id"], row["value_key_nonce"], row["value_key_wrapped"]
                    ),
                )
                same = change.matches(
                    current.version, stored_key, Sealed(row["value_nonce"], row["ciphertext"])
                )
            plan = plan_write(name, current, change, same)
            if plan.noop:
                assert current is not None
                kept = WriteResult(current, created=False, revision=revision - 1, changed=False)
                raise _Unchanged(kept)  # rolls the revision back (and its notification)
            sealed: Sealed | None = None
            if plan.seals:
                assert change.seal is not None
                key = DataKeyRecord(
                    id=row["key_id"],
                    app_id=env.app_id,
                    env_id=env.id,
                    wrapped=WrappedKey(row["master_key_id"], row["key_nonce"], row["wrapped"]),
                )
                sealed = change.seal(plan.version, key)
            sql, args = _write_statement(
                env.id, name, current, plan.description, plan.version, revision, now,
                sealed, key_id, change.actor, max_versions, change.audit,
            )  # fmt: skip
            written = await tx.conn.fetchrow(sql, *args)
            meta = SecretMeta(
                id=int(written["id"]),
                env_id=env.id,
                name=name,
                description=plan.description,
                version=plan.version,
                modified_revision=revision,
                created_at=written["created_at"],
                updated_at=now,
            )
            return WriteResult(meta, created=current is None, revision=revision)

        try:
            return await self._write(unit)
        except _Unchanged as unchanged:
            return unchanged.result

    async def delete_secret(
        self, env: Environment, name: str, if_match: IfMatch | None, audit: AuditEvent | None
    ) -> int:
        async def unit(tx: _Tx) -> int:
            await tx.conn.execute("SELECT 1 FROM environments WHERE id = $1 FOR UPDATE", env.id)
            row = await tx.conn.fetchrow(_q(sql.GET_SECRET), env.id, name)
            current = plan_delete(name, secret_record(row) if row else None, if_match)
            revision = await tx.bump(env.id)
            await tx.conn.execute(_q(sql.DELETE_SECRET), current.id)
            await tx.audit(audit)
            return revision

        return await self._write(unit)

    async def read_values(self, env: Environment, names: Sequence[str] | None) -> ValueSnapshot:
        """The environment's row, its current values and their data keys in one statement (one
        snapshot, one round trip: a woken watcher's answer waits for nothing else)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                VALUES_WITH_KEYS, env.id, None if names is None else sorted(set(names))
            )
        if not rows:
            raise NotFoundError("environment not found")
        first = rows[0]
        values, unset, keys = [], [], {}
        for r in rows:
            if r["name"] is None:  # the environment holds none of them: its row alone
                continue
            if r["ciphertext"] is None:
                unset.append(r["name"])
                continue
            key_id = int(r["data_key_id"])
            values.append(
                StoredValue(
                    r["name"],
                    int(r["version"]),
                    SealedValue(key_id, Sealed(r["nonce"], r["ciphertext"])),
                )
            )
            if key_id not in keys:
                keys[key_id] = data_key_record(
                    {
                        "id": key_id,
                        "app_id": r["k_app_id"],
                        "env_id": r["k_env_id"],
                        "master_key_id": r["k_master_key_id"],
                        "nonce": r["k_nonce"],
                        "wrapped": r["k_wrapped"],
                    }
                )
        environment = env_record(
            {
                "id": first["e_id"],
                "app_id": first["e_app_id"],
                "name": first["e_name"],
                "revision": first["e_revision"],
                "created_at": first["e_created_at"],
            }
        )
        return ValueSnapshot(environment, tuple(values), tuple(unset), keys)

    async def list_versions(self, env_id: int, name: str) -> list[VersionMeta] | None:
        async with self._connection() as conn:
            secret_id = await conn.fetchval(_q(sql.SECRET_ID), env_id, name)
            if secret_id is None:
                return None
            rows = await conn.fetch(_q(sql.LIST_VERSIONS), secret_id)
        return [
            VersionMeta(int(r["version"]), r["created_at"], r["actor"], bool(r["kept"]))
            for r in rows
        ]

    async def get_version(
        self, env_id: int, name: str, version: int
    ) -> tuple[SealedValue, DataKeyRecord] | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(_q(sql.GET_VERSION), env_id, name, version)
            if row is None:
                return None
            krow = await conn.fetchrow(_q(sql.DATA_KEY_BY_ID), row["data_key_id"])
        sealed = SealedValue(int(row["data_key_id"]), Sealed(row["nonce"], row["ciphertext"]))
        return sealed, data_key_record(krow)

    # -- tokens and trust policies (written by RepositoryBase) -----------------------------

    async def _execute(self, statement: str, *args: Any) -> None:
        async def unit(tx: _Tx) -> None:
            await tx.conn.execute(_q(statement), *args)

        await self._write(unit)

    async def _retire(self, update: str, item_id: str, now: datetime) -> bool:
        """Revoke a token or delete a trust policy (``update``: ``(now, id)``, ``RETURNING
        id``), announced to every replica's LISTEN as a revocation when it commits."""

        async def unit(tx: _Tx) -> bool:
            row = await tx.conn.fetchrow(
                f"WITH t AS ({_q(update)}) SELECT pg_notify($3, id) FROM t",  # noqa: S608
                now,
                item_id,
                REVOCATIONS,
            )
            return row is not None

        retired = await self._write(unit)
        if retired:
            self._announce_revoked([item_id])
        return retired

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        batch = list(events)
        if batch:
            async with self._connection(write=True) as conn:
                await _insert_audit(conn, batch)

    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]:
        count, page, params = sql.audit_page(query, _same)
        async with self._connection() as conn:
            total = await conn.fetchval(sql.numbered(count), *params)
            rows = await conn.fetch(sql.numbered(page), *params, query.limit, query.offset)
        return [audit_record(r) for r in rows], int(total)

    # -- consumers and the restart budget -----------------------------------------------------

    async def upsert_consumers(self, consumers: Sequence[Consumer]) -> None:
        rows = sql.consumer_params(consumers, _same)
        if rows:
            async with self._connection(write=True) as conn:
                await conn.executemany(_q(sql.UPSERT_CONSUMER), rows)

    async def forget_consumers(self, before: datetime) -> int:
        async with self._connection(write=True) as conn:
            status = await conn.execute(_q(sql.FORGET_CONSUMERS), before)
        return int(status.split()[-1])

    async def set_rollout_policy(self, env_id: int, max_unavailable: str | None) -> None:
        async with self._connection(write=True) as conn:
            if max_unavailable is None:
                await conn.execute(_q(sql.CLEAR_POLICY), env_id)
            else:
                await conn.execute(_q(sql.SET_POLICY), env_id, max_unavailable)

    async def acquire_slot(
        self, consumer: Consumer, revision: int, lease: timedelta, live_since: datetime
    ) -> Grant:
        now = consumer.last_seen

        async def unit(tx: _Tx) -> Grant:
            conn, env_id = tx.conn, consumer.env_id
            # Grants for one environment run one at a time, whichever replica makes them.
            await conn.execute(_SLOT_LOCK, env_id)
            await conn.executemany(_q(sql.UPSERT_CONSUMER), sql.consumer_params([consumer], _same))
            await conn.execute(_q(sql.EXPIRE_SLOTS), env_id, now)
            row = await conn.fetchrow(_q(sql.BUDGET_INPUTS), live_since, live_since, env_id)
            if row is None:
                raise NotFoundError("environment not found")
            held = [r[0] for r in await conn.fetch(_q(sql.HELD_SLOTS), env_id)]
            grant = decide(consumer.report.id, row[1], row[2], held, paused=row[3] > 0)
            if grant.granted:
                await conn.execute(
                    _q(sql.PUT_SLOT), env_id, consumer.report.id, revision, now, now + lease
                )
            return grant

        return await self._write(unit)

    async def release_slot(self, consumer: Consumer) -> bool:
        async def unit(tx: _Tx) -> bool:
            conn = tx.conn  # (no lock: a release only lowers the count a grant reads)
            await conn.executemany(_q(sql.UPSERT_CONSUMER), sql.consumer_params([consumer], _same))
            status = await conn.execute(_q(sql.RELEASE_SLOT), consumer.env_id, consumer.report.id)
            return bool(status != "DELETE 0")

        return await self._write(unit)

    # -- keys ------------------------------------------------------------------------------

    async def rewrap_data_key(
        self, data_key_id: int, expected_master_key_id: str, wrapped: WrappedKey
    ) -> bool:
        async def unit(tx: _Tx) -> bool:
            key = (wrapped.master_key_id, wrapped.nonce, wrapped.ciphertext, data_key_id)
            status = await tx.conn.execute(_q(sql.REWRAP_DATA_KEY), *key, expected_master_key_id)
            return bool(status != "UPDATE 0")

        return await self._write(unit)

    async def reencrypt_environment(
        self, env_id: int, new_key: KeyWrapper, reseal: Resealer
    ) -> int:
        async def unit(tx: _Tx) -> int:
            conn = tx.conn
            env_row = await conn.fetchrow(_q(sql.ENVIRONMENT_BY_ID) + " FOR UPDATE", env_id)
            if env_row is None:
                return 0
            new_id = await _new_data_key(tx, int(env_row["app_id"]), env_id, utcnow(), new_key)
            keys = {
                int(r["id"]): data_key_record(r)
                for r in await conn.fetch(_q(sql.DATA_KEYS_OF_ENVIRONMENT), env_id)
            }
            rows = await conn.fetch(_q(sql.SEALED_VALUES_OF_ENVIRONMENT), env_id)
            for r in rows:
                sealed = reseal(
                    keys[int(r["data_key_id"])],
                    keys[new_id],
                    r["name"],
                    int(r["version"]),
                    Sealed(r["nonce"], r["ciphertext"]),
                )
                value = (new_id, sealed.nonce, sealed.ciphertext, r["secret_id"], r["version"])
                await conn.execute(_q(sql.RESEAL_VALUE), *value)
            await conn.execute(_q(sql.DROP_OTHER_DATA_KEYS), env_id, new_id)
            return len(rows)

        return await self._write(unit)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, settings or cursors; the migration
    lock is released in place), so the reset round trip asyncpg makes on every release (~0.2 ms,
    three times per write request) is skipped. A connection returned mid-transaction is still
    rolled back by the pool."""


def _set_event(event: asyncio.Event, *_: object) -> None:
    event.set()


_IN_DOUBT = (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


# An environment's row, its current values (all, or those named in $2) and their data keys, in
# one statement: one snapshot and one round trip. The environment's row comes back even when it
# holds none of the secrets (name NULL).
VALUES_WITH_KEYS = (
    "SELECT e.id AS e_id, e.app_id AS e_app_id, e.name AS e_name, e.revision AS e_revision, "
    "e.created_at AS e_created_at, s.name, s.version, v.data_key_id, v.nonce, v.ciphertext, "
    "k.env_id AS k_env_id, ke.app_id AS k_app_id, k.master_key_id AS k_master_key_id, "
    "k.nonce AS k_nonce, k.wrapped AS k_wrapped "
    "FROM environments e "
    "LEFT JOIN secrets s ON s.env_id = e.id AND ($2::text[] IS NULL OR s.name = ANY($2::text[])) "
    "LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version "
    "LEFT JOIN data_keys k ON k.id = v.data_key_id "
    "LEFT JOIN environments ke ON ke.id = k.env_id "
    "WHERE e.id = $1 ORDER BY s.name"
)


@asynccontextmanager
async def _transaction(conn: asyncpg.Connection, **options: Any) -> AsyncIterator[None]:
    """``conn.transaction()``, except that a connection in doubt (timed out, cut off) is not
    sent a ROLLBACK -- on a frozen server that would hang as long again; it is terminated."""
    tx = conn.transaction(**options)
    await tx.start()
    try:
        yield
    except _IN_DOUBT:
        raise
    except BaseException:
        await tx.rollback()
        raise
    await tx.commit()


# SQLSTATE classes and codes that mean "the database cannot serve now", not "a bug".
_SQLSTATE = {
    "08": ("database_unavailable", "lost the connection to PostgreSQL"),  # connection exception
    "53100": ("disk_full", "PostgreSQL's disk is full"),
    "53": ("database_unavailable", "PostgreSQL is out of resources"),  # incl. too many clients
    "57014": ("database_timeout", "a PostgreSQL statement was cancelled (timeout)"),
    "57": ("database_unavailable", "PostgreSQL is shutting down or restarting"),
    "25006": ("database_read_only", "PostgreSQL is read-only (a standby?)"),
    "58": ("database_unavailable", "PostgreSQL system error (I/O)"),
}


def _fault(exc: BaseException) -> DatabaseUnavailableError | None:
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailableError(
            "PostgreSQL did not answer in time (pool or statement timeout)", "database_timeout"
        )
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        known = _SQLSTATE.get(state) or _SQLSTATE.get(state[:2])
        if known is None:
            return None
        return DatabaseUnavailableError(known[1], known[0])
    if isinstance(exc, OSError | asyncpg.InterfaceError):
        # refused, reset, unreachable; "connection is closed", "connection was lost"
        return DatabaseUnavailableError(
            f"cannot reach PostgreSQL ({type(exc).__name__})", "database_unavailable"
        )
    return None


async def _migrate(conn: asyncpg.Connection, *, apply: bool) -> SchemaChange:
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        current = int(await conn.fetchval(sql.SCHEMA_VERSION))
        latest = migrations.check_version("postgres", current, migrate=apply)
        for m in migrations.migrations("postgres"):
            if m.version <= current:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(_q(sql.RECORD_MIGRATION), m.version, m.name, utcnow())
        return SchemaChange(current, latest)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
