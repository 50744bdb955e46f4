"""The WAL index's header as a commit mark: equal marks mean nothing was committed between."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from loader.store.walindex import WalIndex


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return conn


def test_every_commit_changes_the_mark_and_reads_do_not(tmp_path: Path) -> None:
    db = tmp_path / "db"
    writer = _db(db)
    reader = sqlite3.connect(db, isolation_level=None)
    wal = WalIndex(db)
    wal.open()
    marks = []
    for i in range(5):
        before = wal.mark()
        reader.execute("SELECT count(*) FROM t").fetchone()
        assert wal.mark() == before is not None  # reads leave it be
        writer.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
        marks.append(wal.mark())
        assert marks[-1] != before
    other = sqlite3.connect(db, isolation_level=None)  # another connection's commit too
    other.execute("UPDATE t SET v = 'x' WHERE id = 1")
    assert wal.mark() not in marks
    assert len(set(marks)) == 5
    wal.close()
    assert wal.mark() is None


def test_no_index_file_is_unsure(tmp_path: Path) -> None:
    wal = WalIndex(tmp_path / "missing.db")
    wal.open()
    assert wal.mark() is None


def test_torn_copies_are_unsure(tmp_path: Path) -> None:
    shm = tmp_path / "db-shm"
    header = bytes([3, 0, 0, 0]) + bytes(8) + b"\x01" + bytes(35)
    shm.write_bytes(header + header[:-1] + b"\x07" + bytes(100))
    wal = WalIndex(tmp_path / "db")
    wal.open()
    assert wal.mark() is None
    shm.write_bytes(header + header + bytes(100))
    assert wal.mark() == header
