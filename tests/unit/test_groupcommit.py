"""Group commit on a real SQLite file: batching, per-unit rollback, all-or-nothing commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.store.groupcommit import GroupCommitWriter


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "g.db"
    conn = _connect(path)
    conn.executescript(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
        "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    conn.close()
    yield path


def rows(path: Path, table: str = "t") -> list[tuple[object, ...]]:
    conn = _connect(path)
    try:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY id"))
    finally:
        conn.close()


def insert(i: int, value: str = "v"):  # type: ignore[no-untyped-def]
    def unit(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (id, v) VALUES (?, ?)", (i, value))
        return i

    return unit


async def _held_batch(
    writer: GroupCommitWriter, units: list, gate: threading.Event
) -> list[object]:  # type: ignore[type-arg]
    """Block the writer on a first unit so that ``units`` queue up and go in one batch."""

    def blocker(conn: sqlite3.Connection) -> str:
        gate.wait(10)
        return "blocker"

    first = asyncio.ensure_future(writer.run(blocker))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(writer.run(u)) for u in units]
    await asyncio.sleep(0.05)
    gate.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


async def test_waiting_units_share_one_commit_and_are_durable_when_acknowledged(
    db: Path,
) -> None:
    writer = GroupCommitWriter(lambda: _connect(db))
    try:
        results = await _held_batch(writer, [insert(i) for i in range(20)], threading.Event())
        assert results == ["blocker", *range(20)]
        assert (writer.batches, writer.units) == (2, 21)  # the blocker alone, then all 20
        assert [r[0] for r in rows(db)] == list(range(20))  # another connection sees them
    finally:
        writer.close()


async def test_a_failing_unit_rolls_back_alone_and_later_units_see_earlier_ones(
    db: Path,
) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (id, v) VALUES (100, 'half')")
        raise ValueError("unit refused")

    def reads_previous(conn: sqlite3.Connection) -> list[int]:
        return [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")]

    writer = GroupCommitWriter(lambda: _connect(db))
    try:
        results = await _held_batch(
            writer, [insert(1), half_then_fail, insert(2), reads_previous], threading.Event()
        )
    finally:
        writer.close()
    assert results[1] == 1 and results[3] == 2
    assert isinstance(results[2], ValueError)
    assert results[4] == [1, 2]  # serial semantics inside the batch, without the failed unit
    assert [r[0] for r in rows(db)] == [1, 2]


async def test_a_failed_commit_fails_every_unit_of_the_batch(db: Path) -> None:
    def orphan(conn: sqlite3.Connection) -> str:
        # A deferred foreign key: the statement succeeds, the COMMIT is refused.
        conn.execute("INSERT INTO child (id, parent_id) VALUES (1, 999)")
        return "orphan"

    writer = GroupCommitWriter(lambda: _connect(db))
    try:
        results = await _held_batch(writer, [insert(1), orphan, insert(2)], threading.Event())
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results[1:])
        assert rows(db) == [] and rows(db, "child") == []
        assert await writer.run(insert(3)) == 3  # the writer carries on
        assert [r[0] for r in rows(db)] == [3]
    finally:
        writer.close()


async def test_raw_units_run_alone_between_batches(db: Path) -> None:
    def raw(conn: sqlite3.Connection) -> bool:
        in_tx = conn.in_transaction
        conn.executescript("BEGIN; INSERT INTO t (id, v) VALUES (50, 'raw'); COMMIT;")
        return in_tx

    writer = GroupCommitWriter(lambda: _connect(db))
    try:
        gate = threading.Event()

        def blocker(conn: sqlite3.Connection) -> None:
            gate.wait(10)

        first = asyncio.ensure_future(writer.run(blocker))
        await asyncio.sleep(0.05)
        before = asyncio.ensure_future(writer.run(insert(1)))
        raw_done = asyncio.ensure_future(writer.run(raw, raw=True))
        after = asyncio.ensure_future(writer.run(insert(2)))
        await asyncio.sleep(0.05)
        gate.set()
        await first
        assert await before == 1 and await after == 2
        assert await raw_done is False  # no batch transaction was open around it
        assert [r[0] for r in rows(db)] == [1, 2, 50]
    finally:
        writer.close()


async def test_close_finishes_what_is_queued(db: Path) -> None:
    writer = GroupCommitWriter(lambda: _connect(db))
    pending = [asyncio.ensure_future(writer.run(insert(i))) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.get_running_loop().run_in_executor(None, writer.close)
    assert await asyncio.gather(*pending) == list(range(5))
    assert len(rows(db)) == 5


async def test_a_unit_still_queued_at_its_timeout_is_never_run(db: Path) -> None:
    """A caller that gives up gets a definite "not done": the unit is skipped, not run later.
    A unit already running when its caller's timeout passes is waited for."""
    from loader.errors import DatabaseUnavailableError

    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> str:
        gate.wait(10)
        conn.execute("INSERT INTO t (id, v) VALUES (1, 'slow')")
        return "slow"

    writer = GroupCommitWriter(lambda: _connect(db))
    try:
        running = asyncio.ensure_future(writer.run(slow, timeout=0.05))
        await asyncio.sleep(0.02)
        with pytest.raises(DatabaseUnavailableError) as refused:
            await writer.run(insert(2), timeout=0.1)
        assert refused.value.code == "database_timeout"
        await asyncio.sleep(0.1)
        assert not running.done()  # past its timeout, but started: waited for
        gate.set()
        assert await running == "slow"
        assert await writer.run(insert(3), timeout=5) == 3
        assert [r[0] for r in rows(db)] == [1, 3]  # 2 never ran
    finally:
        gate.set()
        writer.close()
