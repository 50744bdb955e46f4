"""Group commit for the SQLite store's single writer.

Units of work queue up for one writer thread. The thread takes every unit waiting (up to
``max_batch``), runs them one after another in one ``BEGIN IMMEDIATE`` transaction, each inside
its own ``SAVEPOINT``, and commits once: one fsync for the batch instead of one per write. The
result is the same as running the units serially (each sees the ones before it), but a unit
that raises is rolled back to its savepoint and fails alone, and a failed ``COMMIT`` fails every
unit in the batch. Nothing is acknowledged before the commit that holds it is on disk.

A "raw" unit (migrations, which manage their own transactions) runs alone, between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    raw: bool


class GroupCommitWriter:
    def __init__(
        self, connect: Callable[[], sqlite3.Connection], max_batch: int = 64, name: str = "writer"
    ) -> None:
        self._connect = connect
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.batches = 0  # for tests and metrics: how many commits served how many units
        self.units = 0

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, raw: bool = False) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, future, loop, raw))
        # If the caller is cancelled the unit still runs (it may already be committing).
        return await future

    def close(self) -> None:
        """Finish what is queued, then stop the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._connect()
        carried: _Job | None = None  # a raw unit met while filling a batch runs next
        while True:
            job = carried or self._queue.get()
            carried = None
            if job is None:
                return
            if job.raw:
                self._run_raw(conn, job)
                continue
            batch = [job]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if more.raw:
                    carried = more
                    break
                batch.append(more)
            self._run_batch(conn, batch)
            if stop:
                return

    def _run_raw(self, conn: sqlite3.Connection, job: _Job) -> None:
        try:
            result = job.fn(conn)
        except BaseException as exc:
            _deliver(job, error=exc)
        else:
            _deliver(job, result=result)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        succeeded: list[tuple[_Job, Any]] = []
        failed: list[tuple[_Job, BaseException]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT unit")
                try:
                    result = job.fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    failed.append((job, exc))
                    continue
                conn.execute("RELEASE unit")
                succeeded.append((job, result))
            conn.execute("COMMIT")
        except BaseException as exc:
            # BEGIN, a savepoint or the commit itself failed: nothing in the batch is durable.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            own = {id(job): error for job, error in failed}
            for job in batch:
                _deliver(job, error=own.get(id(job), exc))
            return
        self.batches += 1
        self.units += len(batch)
        for job, error in failed:
            _deliver(job, error=error)
        for job, result in succeeded:
            _deliver(job, result=result)


def _deliver(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # cancelled by its caller meanwhile
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        job.loop.call_soon_threadsafe(settle)
