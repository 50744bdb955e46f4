"""The embedded default: SQLite in WAL mode, one writer thread, a small pool of reader threads.

Each repository call runs as one unit of work on a thread: a write is one unit of the writer's
group commit (:mod:`loader.store.groupcommit`: concurrent writes share a transaction and an fsync,
each in its own savepoint), and a read is one consistent WAL snapshot.
``synchronous=FULL``: a write is on disk (WAL fsynced) before it is acknowledged, so it survives
``kill -9`` and power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from loader.crypto import Sealed, WrappedKey
from loader.errors import (
    AlreadyExistsError,
    ConfigError,
    DatabaseUnavailableError,
    NotFoundError,
)
from loader.store import migrations, sql, sqlitefile
from loader.store.fleet import Consumer, Grant, decide
from loader.store.groupcommit import GroupCommitWriter
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
    iso,
    parse_iso,
    utcnow,
)
from loader.store.records import (
    audit_record,
    data_key_record,
    env_record,
    secret_record,
)
from loader.store.repository import (
    REVOCATION_POLL,
    REVOCATION_SKEW,
    ChangeListener,
    KeyWrapper,
    RepositoryBase,
    Resealer,
    SchemaChange,
)
from loader.store.walindex import WalIndex
from loader.store.writeplan import compares_value, plan_delete, plan_write

T = TypeVar("T")
R = TypeVar("R")

LOOP_STEPS = 20
"""A statement on the event loop's own connection is interrupted (and goes to a reader
thread) after this many thousand virtual-machine steps: a few hundred microseconds."""

KEY_READS = 10_000
"""Rows read by key kept for as long as nothing is committed (environments, tokens)."""

# A secret with its current value (still sealed), to tell a write of the same value.
_CURRENT_AND_VALUE = (
    "SELECT s.id, s.env_id, s.name, s.description, s.version, s.modified_revision, "
    "s.created_at, s.updated_at, v.data_key_id AS value_key_id, v.nonce AS value_nonce, "
    "v.ciphertext AS value_ciphertext FROM secrets s LEFT JOIN secret_versions v "
    "ON v.secret_id = s.id AND v.version = s.version WHERE s.env_id = ? AND s.name = ?"
)


class _Tx:
    """A write unit's view: the connection plus the changes to announce after commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.changes: list[tuple[int, int]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def bump(self, env_id: int) -> int:
        row = self.conn.execute(
            "UPDATE environments SET revision = revision + 1 WHERE id = ? RETURNING revision",
            (env_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError("environment not found")
        revision: int = row[0]
        self.changes.append((env_id, revision))
        return revision

    def audit(self, event: AuditEvent | None) -> None:
        if event is not None:
            _insert_audit(self.conn, [event])


def _insert_audit(conn: sqlite3.Connection, events: Sequence[AuditEvent]) -> None:
    conn.executemany(sql.INSERT_AUDIT, sql.audit_params(events, iso))


def _new_data_key(tx: _Tx, app_id: int, env_id: int, now: datetime, new_key: KeyWrapper) -> int:
    wrapped = new_key(app_id, env_id)
    key = (env_id, wrapped.master_key_id, wrapped.nonce, wrapped.ciphertext, iso(now))
    key_id: int = tx.execute(sql.INSERT_DATA_KEY, key).fetchone()[0]
    tx.execute(sql.SET_DATA_KEY, (key_id, env_id))
    return key_id


def _insert_environment(
    tx: _Tx, app_id: int, name: str, now: datetime, new_key: KeyWrapper
) -> Environment:
    row = tx.execute(sql.INSERT_ENVIRONMENT, (app_id, name, iso(now))).fetchone()
    if row is None:
        raise AlreadyExistsError(f"environment {name!r} already exists")
    _new_data_key(tx, app_id, row[0], now, new_key)
    return Environment(id=row[0], app_id=app_id, name=name, revision=0, created_at=now)


class SQLiteRepository(RepositoryBase):
    backend = "sqlite"

    def __init__(
        self, path: Path, readers: int = 2, timeouts: DatabaseTimeouts | None = None
    ) -> None:
        super().__init__()
        self.path = path
        self.timeouts = timeouts or DatabaseTimeouts()
        self.health = DatabaseHealth()
        self.schema_change = SchemaChange(0, 0)
        self._identity: tuple[int, int] | None = None
        self._lock_fd: int | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = GroupCommitWriter(self._connection, name="loader-sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="loader-sqlite-reader")
        self._listeners: list[ChangeListener] = []
        # Revocations by other processes (see revocation_epoch): the event loop's own
        # connection for PRAGMA data_version, and the catching up it triggers.
        self._gate: sqlite3.Connection | None = None
        self._loop_steps = 0
        self._wal = WalIndex(path)
        self._caught_up_at: bytes | None = None
        self._key_reads: dict[tuple[str, tuple[Any, ...]], tuple[bytes, Any]] = {}
        self._seen_version = -1
        self._revoked_after = utcnow() - REVOCATION_SKEW
        self._catching_up: asyncio.Future[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        migrate: bool = False,
        init_empty: bool = False,
        exclusive: bool = False,
        timeouts: DatabaseTimeouts | None = None,
    ) -> SQLiteRepository:
        """Open (``migrate``: create or upgrade the schema first). Every refusal happens after a
        read-only look and before anything writes: no file is created, no ``-wal`` touched.
        ``exclusive``: hold the database's lock (``store serve``); ``init_empty``: create a
        fresh schema even where a store lived before."""
        lock_fd = sqlitefile.hold_lock(path) if exclusive else None
        try:
            if sqlitefile.is_empty(path):
                _check_creatable(path, migrate=migrate, init_empty=init_empty)
                sqlitefile.set_aside(path)
                sqlitefile.create_empty(path)
            else:
                migrations.check_version("sqlite", sqlitefile.schema_version(path), migrate=migrate)
            repo = cls(path, timeouts=timeouts)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        repo._lock_fd = lock_fd
        try:
            repo.schema_change = await repo._write_raw(lambda conn: _migrate(conn, apply=migrate))
            sqlitefile.write_marker(path)
            repo._identity = sqlitefile.identity(path)
        except BaseException:
            await repo.close()
            raise
        return repo

    async def close(self) -> None:
        self._closed = True
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)
        self._wal.close()  # after every connection (see loader.store.walindex)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _shutdown(self) -> None:
        self._writer.close()
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # A thread's first connection: to the file the store opened, and never a new one
            # (connecting to a deleted database's path would create an empty file there).
            problem = self.file_problem()
            if problem is not None:
                raise problem
            conn = connect(self.path, busy_timeout=self.timeouts.acquire)
            self._local.deadline = _Deadline(conn)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def watch_changes(self, reconnected: Callable[[], Awaitable[None]]) -> None:
        """One process serves a SQLite store, and announces its own changes. But the CLI writes
        the file directly (``loader store token revoke``): look for other connections' commits
        every :data:`REVOCATION_POLL` seconds too, so a request held by a revoked token is
        woken even when no other request comes."""
        while True:
            await asyncio.sleep(REVOCATION_POLL)
            await self.revocation_epoch()

    async def revocation_epoch(self) -> int | None:
        """The store announces its own revocations as they commit; the CLI's are another
        connection's commits. Nothing committed since the last look (the WAL index's header
        unchanged, :mod:`loader.store.walindex`: one ``pread``) and the answer is immediate.
        Otherwise ``PRAGMA data_version`` on the event loop's own connection (it never waits:
        busy reads as None) tells what the last look covered, and the revocations since are
        read and announced before this returns: on the loop while that stays within
        :data:`LOOP_STEPS`, else on a reader thread (once for every request that asks
        meanwhile). The epoch never changes: nothing is missed while the file is readable."""
        mark = self._mark()
        if mark is not None and mark == self._caught_up_at:
            return 0  # nothing committed since the last catching up
        try:
            version = _data_version(self._loop_connection())
        except sqlite3.Error:
            return None
        while self._seen_version < version:
            since = self._revoked_after
            try:
                self._caught_up(version, self._on_loop(sql.REVOKED_SINCE, iso(since), iso(since)))
                continue
            except sqlite3.Error:  # too long for the loop (many tokens), or busy
                pass
            pending = self._catching_up
            if pending is None:
                pending = self._catching_up = asyncio.ensure_future(self._catch_up(version))
            try:
                await asyncio.shield(pending)
            except Exception:  # reported by whoever reads the database next
                return None
        self._caught_up_at = mark  # seen before the catching up: a later commit changes it
        return 0

    async def _catch_up(self, version: int) -> None:
        try:
            # On a reader thread, whose read begins after ``version`` was seen.
            since = iso(self._revoked_after)
            self._caught_up(version, await self._fetch(sql.REVOKED_SINCE, since, since))
        finally:
            self._catching_up = None

    def _caught_up(self, version: int, rows: list[Any]) -> None:
        revoked = [(str(r[0]), parse_iso(r[1])) for r in rows]
        if revoked:
            self._revoked_after = max(at for _, at in revoked) - REVOCATION_SKEW
            self._announce_revoked([token_id for token_id, _ in revoked])
        self._seen_version = max(self._seen_version, version)

    def _loop_connection(self) -> sqlite3.Connection:
        """The event loop's own connection, used only on the loop's thread: it never waits for
        a lock, and a statement that runs past :data:`LOOP_STEPS` is interrupted."""
        if self._gate is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the repository is closed")
            self._gate = connect(self.path, busy_timeout=0)
            self._gate.set_progress_handler(self._loop_step, 1000)
            _data_version(self._gate)  # a read: the WAL index exists from here on
            self._wal.open()
        return self._gate

    def _mark(self) -> bytes | None:
        """The WAL index's header now (None: unsure), with the loop's connection open."""
        try:
            self._loop_connection()
        except sqlite3.Error:
            return None
        return self._wal.mark()

    def _loop_step(self) -> int:
        self._loop_steps += 1
        return 1 if self._loop_steps > LOOP_STEPS else 0

    def _on_loop(self, statement: str, *args: Any) -> list[Any]:
        conn = self._loop_connection()
        self._loop_steps = 0
        return conn.execute(statement, args).fetchall()

    async def _read_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read of a few statements in one snapshot: on the event loop's own connection when
        it fits in :data:`LOOP_STEPS` (a woken watcher's values right after a change: no
        reader thread's round trip), else -- too long, busy, any trouble -- on a reader thread."""
        try:
            conn = self._loop_connection()
        except sqlite3.Error:
            return await self._read(fn)
        self._loop_steps = 0
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
        return await self._read(fn)

    # -- health --------------------------------------------------------------------------------

    def file_problem(self) -> DatabaseUnavailableError | None:
        """Is the file at our path still the database we opened? (Deleted or replaced under a
        running store, SQLite would go on writing into the old, unlinked file.)"""
        if self._identity is None:
            return None
        try:
            current = sqlitefile.identity(self.path)
        except FileNotFoundError:
            return DatabaseUnavailableError(
                "the database file was deleted under the running store; writes are refused "
                "(restore it, or restart the store on a restored copy)",
                "database_file_missing",
            )
        except OSError as exc:
            return DatabaseUnavailableError(
                f"cannot check the database file ({exc.strerror})", "database_unavailable"
            )
        if current != self._identity:
            return DatabaseUnavailableError(
                "the database file was replaced under the running store; writes are refused "
                "(restart the store to serve the new file)",
                "database_file_replaced",
            )
        return None

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    # -- unit-of-work plumbing -------------------------------------------------------------

    async def _write_raw(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A unit that manages its own transactions (migrations), run alone."""
        with self.health.watch(_fault, write=True):
            return await self._writer.run(fn, raw=True)

    async def _write(self, fn: Callable[[_Tx], T]) -> T:
        """One unit of work, committed with whatever else is queued (group commit)."""
        timeouts = self.timeouts

        def unit(conn: sqlite3.Connection) -> tuple[T, list[tuple[int, int]]]:
            problem = self.file_problem()
            if problem is not None:
                raise problem
            tx = _Tx(conn)
            with self._local.deadline.within(timeouts.statement):
                return fn(tx), tx.changes

        with self.health.watch(_fault, write=True):
            result, changes = await self._writer.run(unit, timeout=timeouts.acquire)
        for env_id, revision in changes:
            for listener in self._listeners:
                listener(env_id, revision)
        return result

    async def _fetch(self, statement: str, *args: Any) -> list[Any]:
        return await self._read(lambda conn: conn.execute(statement, args).fetchall())

    async def _fetchrow(self, statement: str, *args: Any) -> Any:
        return await self._read(lambda conn: conn.execute(statement, args).fetchone())

    async def _fetchkey(self, convert: Callable[[Any], R], statement: str, *args: Any) -> R | None:
        """A record by its key, read on the event loop's own connection: tens of microseconds
        where a reader thread's round trip costs several times that. A WAL read never waits for
        the writer, and this connection does not wait at all: busy (or any trouble) and the read
        goes to a reader thread as any other. While nothing is committed (the WAL index's header
        unchanged since), the record read last is the record: it is served again."""
        mark = self._mark()
        key = (statement, args)
        if mark is not None:
            kept = self._key_reads.get(key)
            if kept is not None and kept[0] == mark:
                return kept[1]  # type: ignore[no-any-return]  # nothing committed since
        try:
            rows = self._on_loop(statement, *args)
        except sqlite3.Error:
            row = await self._fetchrow(statement, *args)
        else:
            row = rows[0] if rows else None
        record = convert(row) if row else None
        if mark is not None:
            if len(self._key_reads) >= KEY_READS:
                self._key_reads.clear()
            self._key_reads[key] = (mark, record)
        return record

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        timeouts = self.timeouts
        queued = time.monotonic()

        def unit() -> T:
            if time.monotonic() - queued > timeouts.acquire:
                raise DatabaseUnavailableError(
                    f"no database reader free within {timeouts.acquire:g} s", "database_timeout"
                )
            conn = self._connection()
            with self._local.deadline.within(timeouts.statement):
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")

        # Bounded in the thread (the wait for a reader, the statement's deadline), not here: an
        # event-loop timer per read cost more than the rest of this plumbing together.
        loop = asyncio.get_running_loop()
        with self.health.watch(_fault):
            return await loop.run_in_executor(self._readers, unit)

    # -- apps and environments -------------------------------------------------------------

    async def create_app(self, name: str, now: datetime, new_key: KeyWrapper) -> App:
        def unit(tx: _Tx) -> App:
            row = tx.execute(sql.INSERT_APP, (name, iso(now))).fetchone()
            if row is None:
                raise AlreadyExistsError(f"an app named {name!r} already exists")
            app_id: int = row[0]
            _insert_environment(tx, app_id, "default", now, new_key)
            return App(id=app_id, name=name, created_at=now)

        return await self._write(unit)

    async def delete_app(self, app_id: int) -> bool:
        def unit(tx: _Tx) -> bool:
            for (env_id,) in tx.execute(sql.ENVIRONMENT_IDS_OF_APP, (app_id,)).fetchall():
                tx.bump(env_id)
            return tx.execute(sql.DELETE_APP, (app_id,)).rowcount > 0

        return await self._write(unit)

    async def create_environment(
        self, app_id: int, name: str, now: datetime, new_key: KeyWrapper
    ) -> Environment:
        def unit(tx: _Tx) -> Environment:
            if tx.execute(sql.APP_EXISTS, (app_id,)).fetchone() is None:
                raise NotFoundError("app not found")
            return _insert_environment(tx, app_id, name, now, new_key)

        return await self._write(unit)

    async def delete_environment(self, app_id: int, name: str) -> bool:
        def unit(tx: _Tx) -> bool:
            row = tx.execute(sql.ENVIRONMENT_ID, (app_id, name)).fetchone()
            if row is None:
                return False
            tx.bump(row[0])
            tx.execute(sql.DELETE_ENVIRONMENT, (row[0],))
            return True

        return await self._write(unit)

    async def get_revisions(self, env_ids: Sequence[int]) -> dict[int, int]:
        ids = list(env_ids)

        def unit(conn: sqlite3.Connection) -> dict[int, int]:
            out: dict[int, int] = {}
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT id, revision FROM environments WHERE id IN ({marks})"  # noqa: S608
                out.update({r[0]: r[1] for r in conn.execute(sql, chunk)})
            return out

        return await self._read(unit)

    # -- secrets ---------------------------------------------------------------------------

    async def list_secrets(
        self, env_id: int, offset: int, limit: int
    ) -> tuple[list[SecretMeta], int]:
        def unit(conn: sqlite3.Connection) -> tuple[list[SecretMeta], int]:
            total = conn.execute(sql.COUNT_SECRETS, (env_id,)).fetchone()[0]
            rows = conn.execute(sql.LIST_SECRETS, (env_id, limit, offset)).fetchall()
            return [secret_record(r) for r in rows], total

        return await self._read(unit)

    async def write_secret(
        self, env: Environment, name: str, change: SecretChange, max_versions: int
    ) -> WriteResult:
        now = change.at

        def unit(tx: _Tx) -> WriteResult:
            env_row = tx.execute(
                "SELECT data_key_id FROM environments WHERE id = ?", (env.id,)
            ).fetchone()
            if env_row is None:
                raise NotFoundError("environment not found")
            row = tx.execute(_CURRENT_AND_VALUE, (env.id, name)).fetchone()
            current = secret_record(row) if row else None
            keys: dict[int, DataKeyRecord] = {}

            def key(key_id: int) -> DataKeyRecord:  # the env's active key, most often once
                if key_id not in keys:
                    found = tx.execute(sql.DATA_KEY_BY_ID, (key_id,)).fetchone()
                    keys[key_id] = data_key_record(found)
                return keys[key_id]

            same = (
                compares_value(current, change)
                and row["value_ciphertext"] is not None
                and change.matches is not None
                and change.matches(
                    row["version"],
                    key(row["value_key_id"]),
                    Sealed(row["value_nonce"], row["value_ciphertext"]),
                )
            )
            plan = plan_write(name, current, change, same)
            if plan.noop:
                assert current is not None
                return WriteResult(current, created=False, revision=env.revision, changed=False)
            description = plan.description

            revision = tx.bump(env.id)
            version = plan.version
            if current is None:
                cur = tx.execute(
                    "INSERT INTO secrets (env_id, name, description, version, modified_revision, "
                    "created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?)",
                    (env.id, name, description, revision, iso(now), iso(now)),
                )
                secret_id = cur.lastrowid
                assert secret_id is not None
                created_at = now
            else:
                secret_id, created_at = current.id, current.created_at
            if plan.seals:
                assert change.seal is not None
                active = key(env_row[0])
                sealed = change.seal(version, active)
                tx.execute(
                    "INSERT INTO secret_versions (secret_id, version, created_at, actor, "
                    "data_key_id, nonce, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        secret_id,
                        version,
                        iso(now),
                        change.actor,
                        active.id,
                        sealed.nonce,
                        sealed.ciphertext,
                    ),
                )
                tx.execute(
                    "UPDATE secret_versions SET data_key_id = NULL, nonce = NULL, "
                    "ciphertext = NULL WHERE secret_id = ? AND version <= ? "
                    "AND ciphertext IS NOT NULL",
                    (secret_id, version - max_versions),
                )
            tx.execute(
                "UPDATE secrets SET description = ?, version = ?, modified_revision = ?, "
                "updated_at = ? WHERE id = ?",
                (description, version, revision, iso(now), secret_id),
            )
            tx.audit(change.audit)
            meta = SecretMeta(
                id=secret_id,
                env_id=env.id,
                name=name,
                description=description,
                version=version,
                modified_revision=revision,
                created_at=created_at,
                updated_at=now,
            )
            return WriteResult(meta, created=current is None, revision=revision)

        return await self._write(unit)

    async def delete_secret(
        self, env: Environment, name: str, if_match: IfMatch | None, audit: AuditEvent | None
    ) -> int:
        def unit(tx: _Tx) -> int:
            row = tx.execute(sql.GET_SECRET, (env.id, name)).fetchone()
            current = plan_delete(name, secret_record(row) if row else None, if_match)
            revision = tx.bump(env.id)
            tx.execute(sql.DELETE_SECRET, (current.id,))
            tx.audit(audit)
            return revision

        return await self._write(unit)

    async def read_values(self, env: Environment, names: Sequence[str] | None) -> ValueSnapshot:
        wanted = list(names) if names is not None else None

        def unit(conn: sqlite3.Connection) -> ValueSnapshot:
            env_row = conn.execute(sql.ENVIRONMENT_BY_ID, (env.id,)).fetchone()
            if env_row is None:
                raise NotFoundError("environment not found")
            rows: list[sqlite3.Row] = []
            if wanted is None:
                rows = conn.execute(sql.CURRENT_VALUES + " ORDER BY s.name", (env.id,)).fetchall()
            else:
                for chunk in _chunks(sorted(set(wanted)), 500):
                    marks = ",".join("?" * len(chunk))
                    rows.extend(
                        conn.execute(
                            f"{sql.CURRENT_VALUES} AND s.name IN ({marks}) ORDER BY s.name",
                            (env.id, *chunk),
                        ).fetchall()
                    )
            values = []
            unset = []
            key_ids = set()
            for r in rows:
                if r["ciphertext"] is None:
                    unset.append(r["name"])
                    continue
                key_ids.add(r["data_key_id"])
                values.append(
                    StoredValue(
                        r["name"],
                        r["version"],
                        SealedValue(r["data_key_id"], Sealed(r["nonce"], r["ciphertext"])),
                    )
                )
            keys = {}
            for kid in key_ids:
                krow = conn.execute(sql.DATA_KEY_BY_ID, (kid,)).fetchone()
                keys[kid] = data_key_record(krow)
            return ValueSnapshot(env_record(env_row), tuple(values), tuple(unset), keys)

        return await self._read_soon(unit)

    async def list_versions(self, env_id: int, name: str) -> list[VersionMeta] | None:
        def unit(conn: sqlite3.Connection) -> list[VersionMeta] | None:
            row = conn.execute(sql.SECRET_ID, (env_id, name)).fetchone()
            if row is None:
                return None
            rows = conn.execute(sql.LIST_VERSIONS, (row[0],)).fetchall()
            return [
                VersionMeta(r["version"], parse_iso(r["created_at"]), r["actor"], bool(r["kept"]))
                for r in rows
            ]

        return await self._read(unit)

    async def get_version(
        self, env_id: int, name: str, version: int
    ) -> tuple[SealedValue, DataKeyRecord] | None:
        def unit(conn: sqlite3.Connection) -> tuple[SealedValue, DataKeyRecord] | None:
            row = conn.execute(sql.GET_VERSION, (env_id, name, version)).fetchone()
            if row is None:
                return None
            krow = conn.execute(sql.DATA_KEY_BY_ID, (row["data_key_id"],)).fetchone()
            sealed = SealedValue(row["data_key_id"], Sealed(row["nonce"], row["ciphertext"]))
            return sealed, data_key_record(krow)

        return await self._read(unit)

    # -- tokens and trust policies (written by RepositoryBase) -----------------------------

    async def _execute(self, statement: str, *args: Any) -> None:
        def unit(tx: _Tx) -> None:
            tx.execute(statement, args)

        await self._write(unit)

    async def _retire(self, update: str, item_id: str, now: datetime) -> bool:
        """Revoke a token or delete a trust policy (``update``: ``(now, id)``, ``RETURNING
        id``); other processes notice it (:meth:`watch_changes`)."""
        retired = await self._write(
            lambda tx: tx.execute(update, (iso(now), item_id)).fetchone() is not None
        )
        if retired:
            self._announce_revoked([item_id])
        return retired

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        batch = list(events)
        if batch:
            await self._write(lambda tx: _insert_audit(tx.conn, batch))

    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]:
        count, page, params = sql.audit_page(query, iso)

        def unit(conn: sqlite3.Connection) -> tuple[list[AuditEvent], int]:
            total = conn.execute(count, params).fetchone()[0]
            rows = conn.execute(page, [*params, query.limit, query.offset]).fetchall()
            return [audit_record(r) for r in rows], total

        return await self._read(unit)

    # -- consumers and the restart budget -----------------------------------------------------

    @staticmethod
    def _ts(value: datetime) -> Any:
        return iso(value)

    async def upsert_consumers(self, consumers: Sequence[Consumer]) -> None:
        rows = sql.consumer_params(consumers, iso)
        if rows:
            await self._write(lambda tx: tx.conn.executemany(sql.UPSERT_CONSUMER, rows))

    async def forget_consumers(self, before: datetime) -> int:
        return await self._write(
            lambda tx: tx.execute(sql.FORGET_CONSUMERS, (iso(before),)).rowcount
        )

    async def set_rollout_policy(self, env_id: int, max_unavailable: str | None) -> None:
        def unit(tx: _Tx) -> None:
            if max_unavailable is None:
                tx.execute(sql.CLEAR_POLICY, (env_id,))
            else:
                tx.execute(sql.SET_POLICY, (env_id, max_unavailable))

        await self._write(unit)

    async def acquire_slot(
        self, consumer: Consumer, revision: int, lease: timedelta, live_since: datetime
    ) -> Grant:
        # The one writer thread runs each unit alone: no other grant interleaves with this one.
        now = consumer.last_seen

        def unit(tx: _Tx) -> Grant:
            tx.conn.executemany(sql.UPSERT_CONSUMER, sql.consumer_params([consumer], iso))
            env_id = consumer.env_id
            tx.execute(sql.EXPIRE_SLOTS, (env_id, iso(now)))
            since = iso(live_since)
            row = tx.execute(sql.BUDGET_INPUTS, (since, since, env_id)).fetchone()
            if row is None:
                raise NotFoundError("environment not found")
            held = [r[0] for r in tx.execute(sql.HELD_SLOTS, (env_id,))]
            grant = decide(consumer.report.id, row[1], row[2], held, paused=row[3] > 0)
            if grant.granted:
                slot = (env_id, consumer.report.id, revision, iso(now), iso(now + lease))
                tx.execute(sql.PUT_SLOT, slot)
            return grant

        return await self._write(unit)

    async def release_slot(self, consumer: Consumer) -> bool:
        def unit(tx: _Tx) -> bool:
            tx.conn.executemany(sql.UPSERT_CONSUMER, sql.consumer_params([consumer], iso))
            return tx.execute(sql.RELEASE_SLOT, (consumer.env_id, consumer.report.id)).rowcount > 0

        return await self._write(unit)

    # -- keys ------------------------------------------------------------------------------

    async def rewrap_data_key(
        self, data_key_id: int, expected_master_key_id: str, wrapped: WrappedKey
    ) -> bool:
        def unit(tx: _Tx) -> bool:
            key = (wrapped.master_key_id, wrapped.nonce, wrapped.ciphertext, data_key_id)
            cur = tx.execute(sql.REWRAP_DATA_KEY, (*key, expected_master_key_id))
            return cur.rowcount > 0

        return await self._write(unit)

    async def reencrypt_environment(
        self, env_id: int, new_key: KeyWrapper, reseal: Resealer
    ) -> int:
        def unit(tx: _Tx) -> int:
            env_row = tx.execute(sql.ENVIRONMENT_BY_ID, (env_id,)).fetchone()
            if env_row is None:
                return 0
            now = utcnow()
            new_id = _new_data_key(tx, env_row["app_id"], env_id, now, new_key)
            keys = {
                r["id"]: data_key_record(r)
                for r in tx.execute(sql.DATA_KEYS_OF_ENVIRONMENT, (env_id,))
            }
            rows = tx.execute(sql.SEALED_VALUES_OF_ENVIRONMENT, (env_id,)).fetchall()
            for r in rows:
                sealed = reseal(
                    keys[r["data_key_id"]],
                    keys[new_id],
                    r["name"],
                    r["version"],
                    Sealed(r["nonce"], r["ciphertext"]),
                )
                value = (new_id, sealed.nonce, sealed.ciphertext, r["secret_id"], r["version"])
                tx.execute(sql.RESEAL_VALUE, value)
            tx.execute(sql.DROP_OTHER_DATA_KEYS, (env_id, new_id))
            return len(rows)

        return await self._write(unit)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def connect(path: Path, busy_timeout: float = 30.0) -> sqlite3.Connection:
    """A connection to an existing database file (``mode=rw``: never creates one)."""
    conn = sqlite3.connect(
        sqlitefile.uri(path, "rw"),
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout,
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return conn


class _Deadline:
    """A statement timeout for one connection: SQLite's progress handler interrupts a unit of
    work that runs past its deadline (it then fails, rolled back, with ``database_timeout``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.at: float | None = None
        conn.set_progress_handler(self._expired, 10_000)

    def _expired(self) -> int:
        return 1 if self.at is not None and time.monotonic() > self.at else 0

    def within(self, seconds: float) -> _Deadline:
        self.at = time.monotonic() + seconds
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.at = None


# SQLite's primary result codes that mean "the database cannot serve now", not "a bug".
_UNAVAILABLE = {
    5: ("database_busy", "the database is locked by another process"),  # SQLITE_BUSY
    6: ("database_busy", "a database table is locked"),  # SQLITE_LOCKED
    7: ("database_unavailable", "SQLite ran out of memory"),  # SQLITE_NOMEM
    8: ("database_read_only", "the database file is read-only"),  # SQLITE_READONLY
    9: ("database_timeout", "a database statement ran too long"),  # SQLITE_INTERRUPT
    10: ("database_unavailable", "I/O error on the database file"),  # SQLITE_IOERR
    11: ("database_corrupt", "the database file is damaged"),  # SQLITE_CORRUPT
    13: ("disk_full", "the disk holding the database is full"),  # SQLITE_FULL
    14: ("database_unavailable", "cannot open the database file"),  # SQLITE_CANTOPEN
    26: ("database_corrupt", "the database file is not a SQLite database"),  # SQLITE_NOTADB
}


def _fault(exc: BaseException) -> DatabaseUnavailableError | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        known = _UNAVAILABLE.get(code & 0xFF) if isinstance(code, int) else None
        if known is not None:
            return DatabaseUnavailableError(known[1], known[0])
    if isinstance(exc, OSError):
        return DatabaseUnavailableError(f"database file: {exc.strerror}", "database_unavailable")
    return None


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    return int(conn.execute(sql.SCHEMA_VERSION).fetchone()[0])


def _check_creatable(path: Path, *, migrate: bool, init_empty: bool) -> None:
    """May a fresh schema be created at ``path`` (missing or empty)? Refuses, touching nothing."""
    if not migrate:
        raise ConfigError(
            f"there is no store database at {path}: create one with `loader store init`, "
            "or bring a backup back with `loader store restore`"
        )
    earlier = sqlitefile.previous_store(path)
    if earlier is not None and not init_empty:
        raise ConfigError(
            f"{path} is missing or empty, but {earlier}: the database was deleted or moved. "
            "Restore it (`loader store restore BACKUP`), or start an empty store here with "
            "`loader store migrate --init-empty`"
        )


def _migrate(conn: sqlite3.Connection, *, apply: bool) -> SchemaChange:
    """Apply pending migrations (``apply``) or check the schema is current."""
    current = schema_version(conn)
    latest = migrations.check_version("sqlite", current, migrate=apply)
    pending = [m for m in migrations.migrations("sqlite") if m.version > current]
    for m in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(m.sql):
                conn.execute(statement)
            conn.execute(sql.RECORD_MIGRATION, (m.version, m.name, iso(utcnow())))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return SchemaChange(current, latest)


def _statements(sql: str) -> Iterator[str]:
    buffer: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(buffer).strip()
            if sqlite3.complete_statement(statement):
                yield statement
                buffer = []
    rest = "\n".join(buffer).strip()
    if rest:
        yield rest


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
