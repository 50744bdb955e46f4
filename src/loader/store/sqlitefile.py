"""The SQLite store's files, and the rules that keep them from vanishing.

Beside ``loader.db`` (and SQLite's own ``-wal`` and ``-shm``):

* ``loader.db.lock`` -- held (``flock``) by the one ``store serve`` using the database; a second
  one is refused. It holds the owner's pid, for the message.
* ``loader.db.created`` -- written when a schema is created (or first seen). If it is there but
  the database is missing or empty, the database was deleted or moved: nothing creates a fresh
  schema then unless told ``--init-empty``.

A database is inspected read-only before anything opens it for writing: a read-only connection
never checkpoints, so a refused start leaves a ``-wal`` (which may hold the only copy of recent
writes) exactly as it found it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from loader.errors import ConfigError
from loader.store.models import iso, utcnow

LOCK_SUFFIX = ".lock"
MARKER_SUFFIX = ".created"
SIDE_FILES = ("-wal", "-shm")


def sqlite_path(url: str) -> Path:
    """``sqlite:///rel/path`` or ``sqlite:////abs/path`` -> the database file."""
    rest = url[len("sqlite:///") :]
    return Path("/" + rest[1:]) if rest.startswith("/") else Path(rest)


def side(db: Path, suffix: str) -> Path:
    return db.with_name(db.name + suffix)


def uri(db: Path, mode: str) -> str:
    """A SQLite URI: ``mode=ro`` reads without ever writing; ``mode=rw`` never creates a file."""
    return f"file:{quote(str(db.absolute()))}?mode={mode}"


# -- the serve lock ----------------------------------------------------------------------------


def hold_lock(db: Path) -> int:
    """Take the database's lock for this process (released when the fd closes); refuse if held."""
    try:
        fd = os.open(side(db, LOCK_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create {side(db, LOCK_SUFFIX)}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_pid(fd)
        os.close(fd)
        raise ConfigError(
            f"another loader store{f' (pid {owner})' if owner else ''} is serving {db}: "
            "one store per SQLite database"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lock_owner(db: Path) -> int | None:
    """The pid of the store serving ``db`` (0 if unknown), or None when nobody holds its lock."""
    path = side(db, LOCK_SUFFIX)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        return None
    finally:
        os.close(fd)


def refuse_if_served(db: Path, doing: str) -> None:
    owner = lock_owner(db)
    if owner is not None:
        who = f" (pid {owner})" if owner else ""
        raise ConfigError(f"a loader store{who} is serving {db}: stop it before {doing}")


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    return None


# -- what is on disk ---------------------------------------------------------------------------


def schema_version(db: Path) -> int:
    """The schema version of an existing database, read without writing anything (0 if it has
    no schema). A file that is not a SQLite database is a ConfigError."""
    try:
        conn = sqlite3.connect(uri(db, "ro"), uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open {db}: {exc}") from None
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if found is None:
            return 0
        return int(
            conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
        )
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{db} is not a usable SQLite database ({exc})") from None
    finally:
        conn.close()


def is_empty(db: Path) -> bool:
    """No database there, or a file with no schema."""
    try:
        if db.stat().st_size == 0:
            return True
    except FileNotFoundError:
        return True
    return schema_version(db) == 0


def previous_store(db: Path) -> str | None:
    """Why we believe a store lived at ``db`` before (for a missing or empty database)."""
    if side(db, MARKER_SUFFIX).exists():
        return f"{side(db, MARKER_SUFFIX).name} says a store was created here"
    wal = side(db, "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return f"{wal.name} (a write-ahead log of an earlier database) is still there"
    return None


def write_marker(db: Path) -> None:
    """Best effort (a read-only directory, or a race with another process, is no error)."""
    marker = side(db, MARKER_SUFFIX)
    if marker.exists():
        return
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"loader store database {db.name}, created {iso(utcnow())}\n".encode())
    finally:
        os.close(fd)


def set_aside(db: Path) -> list[Path]:
    """Rename an orphaned ``-wal``/``-shm`` out of the way (never delete them): a new database
    created beside them would have SQLite discard the log."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    moved = []
    for suffix in SIDE_FILES:
        path = side(db, suffix)
        if path.exists():
            target = path.with_name(f"{path.name}.orphan-{stamp}")
            path.rename(target)
            moved.append(target)
    return moved


def create_empty(db: Path) -> None:
    """An empty database file, 0600 (SQLite gives ``-wal`` and ``-shm`` the same mode)."""
    fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)


def identity(db: Path) -> tuple[int, int]:
    st = db.stat()
    return st.st_dev, st.st_ino
