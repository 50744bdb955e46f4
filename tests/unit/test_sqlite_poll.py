"""The SQLite change watcher's connection: a statement still running in a worker thread (its
``asyncio.to_thread`` caller already cancelled) finishes before the connection is closed."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from loader.store.sqlite import _PollConnection


def test_close_waits_for_a_statement_in_flight(tmp_path: Path) -> None:
    conn = _PollConnection(sqlite3.connect(tmp_path / "db", check_same_thread=False))
    started = threading.Event()
    outcome: list[object] = []

    def slow(c: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.2)  # the window in which a store stopping would close the connection
        return int(c.execute("PRAGMA data_version").fetchone()[0])

    def worker() -> None:
        try:
            outcome.append(conn.run(slow))
        except Exception as exc:  # pragma: no cover - the failure this test looks for
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(5)
    conn.close()
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], int), outcome


def test_a_use_after_close_is_refused(tmp_path: Path) -> None:
    conn = _PollConnection(sqlite3.connect(tmp_path / "db", check_same_thread=False))
    conn.close()
    conn.close()  # twice is harmless
    with pytest.raises(sqlite3.ProgrammingError):
        conn.run(lambda c: c.execute("SELECT 1"))
