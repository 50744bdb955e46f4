"""``loader store copy``: every row of one store's database into another, either backend.

Secrets, versions, data keys, audit, tokens and clients, trust policies, apps and environments
move with their ids, revisions and timestamps (millisecond precision, SQLite's), and each id
sequence continues where the source's left off: the ciphertexts are bound to their app and
environment ids, so the same master key opens them in the target. The source is read in one
snapshot; the target is written in one transaction, and before it commits the copy is checked
-- every table's count, every data key unwrapped, a sample of values decrypted. A target that
holds anything is refused.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from loader import crypto
from loader.crypto import Keyring, Sealed, WrappedKey
from loader.errors import (
    AlreadyExistsError,
    ConfigError,
    DecryptionError,
    NotFoundError,
    UsageError,
)
from loader.store import migrations, sqlitefile
from loader.store.models import iso, parse_iso


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    times: tuple[str, ...] = ()
    order: str = "id"
    serial: bool = True  # an ``id`` from a sequence (continued in the target)


# In foreign-key order. tests/integration/test_store_copy.py checks this against the schema.
TABLES: tuple[Table, ...] = (
    Table("apps", ("id", "name", "created_at"), ("created_at",)),
    Table(
        "environments",
        ("id", "app_id", "name", "revision", "data_key_id", "created_at"),
        ("created_at",),
    ),
    Table(
        "data_keys",
        ("id", "env_id", "master_key_id", "nonce", "wrapped", "created_at"),
        ("created_at",),
    ),
    Table(
        "secrets",
        (
            "id",
            "env_id",
            "name",
            "description",
            "version",
            "modified_revision",
            "created_at",
            "updated_at",
        ),
        ("created_at", "updated_at"),
    ),
    Table(
        "secret_versions",
        ("secret_id", "version", "created_at", "actor", "data_key_id", "nonce", "ciphertext"),
        ("created_at",),
        order="secret_id, version",
        serial=False,
    ),
    Table(
        "tokens",
        (
            "id",
            "kind",
            "digest",
            "scopes",
            "app_id",
            "environments",
            "description",
            "created_at",
            "expires_at",
            "revoked_at",
        ),
        ("created_at", "expires_at", "revoked_at"),
        serial=False,
    ),
    Table(
        "audit_events",
        (
            "id",
            "at",
            "token_id",
            "app_id",
            "environment",
            "names",
            "action",
            "outcome",
            "client",
            "count",
            "subject",
            "reason",
        ),
        ("at",),
    ),
    Table(
        "trust_policies",
        (
            "id",
            "issuer",
            "jwks_url",
            "jwks_file",
            "audience",
            "conditions",
            "scopes",
            "app_id",
            "environments",
            "ttl",
            "description",
            "created_at",
            "deleted_at",
        ),
        ("created_at", "deleted_at"),
        serial=False,
    ),
    Table(
        "consumers",
        (
            "env_id",
            "consumer_id",
            "kind",
            "host",
            "version",
            "rendered",
            "running",
            "health",
            "failed",
            "seq",
            "last_seen",
        ),
        ("last_seen",),
        order="env_id, consumer_id",
        serial=False,
    ),
    Table("rollout_policies", ("env_id", "max_unavailable"), order="env_id", serial=False),
    Table(
        "restart_slots",
        ("env_id", "consumer_id", "revision", "granted_at", "expires_at"),
        ("granted_at", "expires_at"),
        order="env_id, consumer_id",
        serial=False,
    ),
)

_SAMPLE = (
    "SELECT e.app_id, s.env_id, s.name, v.version, v.nonce, v.ciphertext, "
    "k.master_key_id, k.nonce AS key_nonce, k.wrapped "
    "FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
    "JOIN environments e ON e.id = s.env_id JOIN data_keys k ON k.id = v.data_key_id "
    "WHERE v.ciphertext IS NOT NULL ORDER BY random() LIMIT 25"
)
_DATA_KEYS = (
    "SELECT k.id, e.app_id, k.env_id, k.master_key_id, k.nonce, k.wrapped "
    "FROM data_keys k JOIN environments e ON e.id = k.env_id"
)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class CopyReport:
    counts: dict[str, int]
    data_keys_checked: int
    values_decrypted: int


class Source(Protocol):
    async def read(self, table: Table) -> list[Row]: ...
    async def next_ids(self) -> dict[str, int]: ...


class Target(Protocol):
    async def write(self, table: Table, rows: list[Row]) -> None: ...
    async def continue_ids(self, next_ids: dict[str, int]) -> None: ...
    async def count(self, table: Table) -> int: ...
    async def fetch(self, sql: str) -> list[Sequence[Any]]: ...


async def copy_rows(source: Source, target: Target, keyring: Keyring) -> CopyReport:
    """Inside the target's transaction: copy, then check (raises before the commit)."""
    counts: dict[str, int] = {}
    for table in TABLES:
        rows = await source.read(table)
        await target.write(table, rows)
        counts[table.name] = len(rows)
    await target.continue_ids(await source.next_ids())
    for table in TABLES:
        found = await target.count(table)
        if found != counts[table.name]:
            raise ConfigError(
                f"copy check failed: {table.name} has {found} rows in the target, "
                f"{counts[table.name]} in the source; nothing was committed"
            )
    keys = await target.fetch(_DATA_KEYS)
    for k in keys:
        _unwrap(keyring, int(k[1]), int(k[2]), WrappedKey(k[3], bytes(k[4]), bytes(k[5])))
    sample = await target.fetch(_SAMPLE)
    for r in sample:
        app_id, env_id, name, version = int(r[0]), int(r[1]), str(r[2]), int(r[3])
        data_key = _unwrap(keyring, app_id, env_id, WrappedKey(r[6], bytes(r[7]), bytes(r[8])))
        try:
            crypto.open_sealed(
                data_key,
                Sealed(bytes(r[4]), bytes(r[5])),
                crypto.value_aad(app_id, env_id, name, version),
                f"value of {name} v{version}",
            )
        except DecryptionError as exc:
            raise ConfigError(f"copy check failed: {exc}; nothing was committed") from None
    return CopyReport(counts, len(keys), len(sample))


def _unwrap(keyring: Keyring, app_id: int, env_id: int, wrapped: WrappedKey) -> bytes:
    try:
        return keyring.unwrap(wrapped, crypto.data_key_aad(app_id, env_id))
    except DecryptionError:
        raise ConfigError(
            f"the master key file does not open the copied data keys (master key "
            f"{wrapped.master_key_id}): copy with the key the source store uses; nothing was "
            "committed"
        ) from None


# -- SQLite ------------------------------------------------------------------------------------


class SqliteSource:
    """Reads one snapshot (a read transaction held for the whole copy)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(sqlitefile.uri(path, "ro"), uri=True, isolation_level=None)
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self.conn.close()

    async def read(self, table: Table) -> list[Row]:
        cols = ", ".join(table.columns)
        rows = self.conn.execute(
            f"SELECT {cols} FROM {table.name} ORDER BY {table.order}"  # noqa: S608
        ).fetchall()
        times = [i for i, c in enumerate(table.columns) if c in table.times]
        return [_convert(row, times, _from_text) for row in rows]

    async def next_ids(self) -> dict[str, int]:
        seqs = dict(self.conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return {t.name: int(seqs.get(t.name, 0)) + 1 for t in TABLES if t.serial}


class SqliteTarget:
    """One ``BEGIN IMMEDIATE`` transaction; ``commit`` or ``rollback`` ends it."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()

    async def write(self, table: Table, rows: list[Row]) -> None:
        times = [i for i, c in enumerate(table.columns) if c in table.times]
        marks = ", ".join("?" * len(table.columns))
        self.conn.executemany(
            f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})",  # noqa: S608
            (_convert(row, times, _to_text) for row in rows),
        )

    async def continue_ids(self, next_ids: dict[str, int]) -> None:
        for name, next_id in next_ids.items():
            self.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
            self.conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) "  # noqa: S608 (a table name of ours)
                f"SELECT ?, max(?, coalesce(max(id), 0)) FROM {name}",
                (name, next_id - 1),
            )

    async def count(self, table: Table) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])  # noqa: S608

    async def fetch(self, sql: str) -> list[Sequence[Any]]:
        return list(self.conn.execute(sql).fetchall())


def _from_text(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else value


def _to_text(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _convert(row: Sequence[Any], times: list[int], fn: Any) -> Row:
    if not times:
        return tuple(row)
    out = list(row)
    for i in times:
        out[i] = fn(out[i])
    return tuple(out)


# -- PostgreSQL --------------------------------------------------------------------------------


class PostgresSide:
    """A source (one repeatable-read snapshot) or a target (one transaction)."""

    def __init__(self, conn: Any, transaction: Any) -> None:
        self.conn = conn
        self.transaction = transaction

    @classmethod
    async def connect(cls, url: str, *, source: bool) -> PostgresSide:
        import asyncpg

        try:
            conn = await asyncpg.connect(
                url, timeout=10, server_settings={"application_name": "loader-admin"}
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from None
        tx = (
            conn.transaction(isolation="repeatable_read", readonly=True)
            if source
            else conn.transaction()
        )
        await tx.start()
        return cls(conn, tx)

    async def close(self, commit: bool = False) -> None:
        try:
            if commit:
                await self.transaction.commit()
            else:
                await self.transaction.rollback()
        finally:
            await self.conn.close()

    async def read(self, table: Table) -> list[Row]:
        rows = await self.conn.fetch(
            f"SELECT {', '.join(table.columns)} FROM {table.name} "  # noqa: S608
            f"ORDER BY {table.order}"
        )
        return [tuple(r) for r in rows]

    async def next_ids(self) -> dict[str, int]:
        out = {}
        for t in TABLES:
            if t.serial:
                row = await self.conn.fetchrow(
                    f"SELECT last_value, is_called FROM {t.name}_id_seq"  # noqa: S608
                )
                out[t.name] = int(row["last_value"]) + (1 if row["is_called"] else 0)
        return out

    async def write(self, table: Table, rows: list[Row]) -> None:
        if rows:
            await self.conn.copy_records_to_table(table.name, records=rows, columns=table.columns)

    async def continue_ids(self, next_ids: dict[str, int]) -> None:
        for name, next_id in next_ids.items():
            await self.conn.execute(
                f"SELECT setval('{name}_id_seq', greatest($1::bigint, "  # noqa: S608
                f"(SELECT coalesce(max(id), 0) + 1 FROM {name})), false)",
                next_id,
            )

    async def count(self, table: Table) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table.name}"))  # noqa: S608

    async def fetch(self, sql: str) -> list[Sequence[Any]]:
        return [tuple(r) for r in await self.conn.fetch(sql)]

    async def live_stores(self) -> int:
        """Connections of serving stores to this database (application_name loader-store)."""
        return int(
            await self.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name IN ('loader-store', 'loader-listener')"
            )
        )


# -- the command's plumbing -------------------------------------------------------------------


def describe(url: str) -> str:
    """A database URL for messages: no user or password."""
    if url.startswith("sqlite:///"):
        return f"sqlite {sqlitefile.sqlite_path(url)}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql {parts.hostname or 'localhost'}{port}{parts.path}"


async def copy(source_url: str, target_url: str, keyring: Keyring) -> CopyReport:
    if source_url == target_url:
        raise UsageError("--from and --to name the same database")
    for url in (source_url, target_url):
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError("database urls must start with sqlite:/// or postgresql://")
    source = await _open_source(source_url)
    try:
        return await _copy_into(source, target_url, keyring)
    finally:
        if isinstance(source, PostgresSide):
            await source.close()
        else:
            source.close()


async def _open_source(url: str) -> SqliteSource | PostgresSide:
    if url.startswith("sqlite:///"):
        path = sqlitefile.sqlite_path(url)
        if sqlitefile.is_empty(path):
            raise NotFoundError(f"there is no store database at {path}")
        sqlitefile.refuse_if_served(path, "copying it (writes after the copy began would be lost)")
        _require_latest(sqlitefile.schema_version(path), "sqlite", describe(url))
        return SqliteSource(path)
    side = await PostgresSide.connect(url, source=True)
    try:
        if await side.live_stores():
            raise ConfigError(
                f"a loader store is serving {describe(url)}: stop it before copying "
                "(writes after the copy began would be lost)"
            )
        version = int(
            await side.conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
    except BaseException:
        await side.close()
        raise
    _require_latest(version, "postgres", describe(url))
    return side


def _require_latest(version: int, backend: str, what: str) -> None:
    latest = migrations.latest(backend)
    if version != latest:
        raise ConfigError(
            f"{what} has schema version {version}, this loader copies version {latest}: "
            "run `loader store migrate` on it first"
        )


async def _copy_into(source: Source, url: str, keyring: Keyring) -> CopyReport:
    from loader.store.backends import open_repository

    if url.startswith("sqlite:///"):
        path = sqlitefile.sqlite_path(url)
        if not path.parent.is_dir():
            raise ConfigError(f"directory {path.parent} does not exist")
        lock = sqlitefile.hold_lock(path)
        try:
            repo = await open_repository(url, migrate=True)  # creates the schema if empty
            await repo.close()
            target = SqliteTarget(path)
            try:
                await _refuse_non_empty(target, url)
                report = await copy_rows(source, target, keyring)
                target.commit()
            finally:
                target.close()
            sqlitefile.write_marker(path)
            return report
        finally:
            os.close(lock)
    repo = await open_repository(url, migrate=True)
    await repo.close()
    side = await PostgresSide.connect(url, source=False)
    committed = False
    try:
        await _refuse_non_empty(side, url)
        report = await copy_rows(source, side, keyring)
        committed = True
    finally:
        await side.close(commit=committed)
    return report


async def _refuse_non_empty(target: Target, url: str) -> None:
    for table in TABLES:
        if await target.count(table):
            raise AlreadyExistsError(
                f"{describe(url)} is not empty ({table.name} has rows): copy into an empty database"
            )
