"""Backup and restore of the SQLite store, with SQLite's online backup API.

``cp loader.db`` while the store serves is wrong: the newest writes live in ``loader.db-wal``.
The backup API copies a consistent snapshot -- database and write-ahead log together -- while
the store goes on writing, into one self-contained file (0600, rollback journal mode).

A restore checks the backup (integrity, schema version, and that the master key file opens its
data keys), refuses while a store serves the target, sets an existing database aside (with its
``-wal`` and ``-shm``: a stale log applied to the restored file would corrupt it) instead of
deleting it, and moves the restored file into place atomically.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from loader import crypto
from loader.crypto import Keyring
from loader.errors import AlreadyExistsError, ConfigError, DecryptionError, NotFoundError
from loader.store import migrations, sqlitefile
from loader.store.models import utcnow
from loader.store.records import data_key_record
from loader.store.transfer import TABLES


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    schema_version: int
    counts: dict[str, int]
    size: int


def backup(source: Path, output: Path) -> BackupReport:
    """Write a consistent copy of the database at ``source`` to ``output`` (a new file)."""
    if not source.exists():
        raise NotFoundError(f"there is no database at {source}")
    if output.exists():
        raise AlreadyExistsError(f"{output} already exists; back up to a new file")
    if not output.parent.is_dir():
        raise ConfigError(f"directory {output.parent} does not exist")
    tmp = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        _copy(source, tmp)
        report = _inspect(tmp)
        _publish(tmp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return BackupReport(output, report[0], report[1], output.stat().st_size)


def restore(backup_file: Path, db: Path, keyring: Keyring, *, force: bool = False) -> BackupReport:
    """Put the backup at ``db`` (set an existing database aside with ``force``)."""
    if not backup_file.is_file():
        raise NotFoundError(f"there is no backup at {backup_file}")
    if not db.parent.is_dir():
        raise ConfigError(f"directory {db.parent} does not exist")
    sqlitefile.refuse_if_served(db, "restoring into it")
    version, counts = _inspect(backup_file)
    if version != migrations.latest("sqlite"):
        raise ConfigError(
            f"{backup_file} has schema version {version}; this loader restores version "
            f"{migrations.latest('sqlite')} (restore with the loader that wrote it, then "
            "`loader store migrate`)"
        )
    check_keys(backup_file, keyring)
    if not sqlitefile.is_empty(db) and not force:
        raise AlreadyExistsError(
            f"{db} already holds a store; --force sets it aside (renamed, not deleted) first"
        )
    lock = sqlitefile.hold_lock(db)  # no store may start while the files move
    tmp = db.with_name(f".{db.name}.restoring-{os.getpid()}")
    try:
        _copy(backup_file, tmp)
        _set_aside_database(db)
        _publish(tmp, db)
        sqlitefile.write_marker(db)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        os.close(lock)
    return BackupReport(db, version, counts, db.stat().st_size)


def check_keys(path: Path, keyring: Keyring) -> int:
    """Every data key in the database at ``path`` opens with ``keyring``; returns how many."""
    conn = sqlite3.connect(sqlitefile.uri(path, "ro"), uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT k.id, e.app_id, k.env_id, k.master_key_id, k.nonce, k.wrapped "
            "FROM data_keys k JOIN environments e ON e.id = k.env_id"
        ).fetchall()
    finally:
        conn.close()
    for row in rows:
        record = data_key_record(row)
        try:
            keyring.unwrap(record.wrapped, crypto.data_key_aad(record.app_id, record.env_id))
        except DecryptionError:
            raise ConfigError(
                f"the master key file does not open this database's data keys (data key "
                f"{record.id} is wrapped by master key {record.wrapped.master_key_id}): restore "
                "with the master key the store used when the backup was taken"
            ) from None
    return len(rows)


def _copy(source: Path, target: Path) -> None:
    """The backup API, in one step (one read transaction: a consistent snapshot)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    src = sqlite3.connect(sqlitefile.uri(source, "ro"), uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()


def _inspect(path: Path) -> tuple[int, dict[str, int]]:
    version = sqlitefile.schema_version(path)
    if version == 0:
        raise ConfigError(f"{path} holds no loader store")
    conn = sqlite3.connect(sqlitefile.uri(path, "ro"), uri=True)
    try:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ConfigError(f"{path} fails SQLite's integrity check")
        counts = {
            t.name: int(conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0])  # noqa: S608
            for t in TABLES
        }
    finally:
        conn.close()
    return version, counts


def _publish(tmp: Path, final: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _set_aside_database(db: Path) -> None:
    """Rename the current database and its ``-wal``/``-shm`` out of the way together."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", *sqlitefile.SIDE_FILES):
        path = sqlitefile.side(db, suffix)
        if path.exists():
            path.rename(path.with_name(f"{path.name}.before-restore-{stamp}"))
