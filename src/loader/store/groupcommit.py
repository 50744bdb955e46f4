"""Group commit for the SQLite store's single writer.

Units of work queue up for one writer thread. The thread takes every unit waiting (up to
``max_batch``), runs them one after another in one ``BEGIN IMMEDIATE`` transaction, each inside
its own ``SAVEPOINT``, and commits once: one fsync for the batch instead of one per write. The
result is the same as running the units serially (each sees the ones before it), but a unit
that raises is rolled back to its savepoint and fails alone, and a failed ``COMMIT`` fails every
unit in the batch. Nothing is acknowledged before the commit that holds it is on disk.

A "raw" unit (migrations, which manage their own transactions) runs alone, between batches.

A caller may give up on a unit that is still queued (``timeout``): the unit is then skipped, never
run, and the caller gets :class:`~loader.errors.DatabaseUnavailableError` (``database_timeout``)
-- a definite "not done". A unit the thread has already started is waited for: its outcome is
about to be known, and answering before it would leave the caller guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loader.errors import DatabaseUnavailableError

T = TypeVar("T")

_QUEUED, _RUNNING, _ABANDONED = 0, 1, 2


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    raw: bool
    state: int = _QUEUED
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> bool:
        """The writer thread takes the unit; False if its caller gave up on it."""
        return self._move(_RUNNING, unless=_ABANDONED)

    def abandon(self) -> bool:
        """The caller gives up; False if the unit is already running (wait for it then)."""
        return self._move(_ABANDONED, unless=_RUNNING)

    def _move(self, state: int, unless: int) -> bool:
        """Go to ``state`` unless the other side got to ``unless`` first (under the lock)."""
        with self.lock:
            if self.state == unless:
                return False
            self.state = state
            return True


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

    async def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        raw: bool = False,
        timeout: float | None = None,
    ) -> T:
        """Run ``fn`` in the writer thread. ``timeout``: the longest to wait for the thread to
        *start* the unit (a unit started is waited for to the end)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, future, loop, raw)
        self._queue.put(job)
        # If the caller is cancelled the unit still runs (it may already be committing).
        if timeout is None:
            return await future
        # A plain timer, not wait_for(shield(...)): two futures and a task fewer on every write.
        timer = loop.call_later(timeout, _give_up, job, timeout)
        try:
            return await future
        finally:
            timer.cancel()

    def close(self) -> None:
        """Finish what is queued, then stop the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # no connection: every unit fails with why (none hangs)
            while (job := self._queue.get()) is not None:
                _deliver(job, error=exc)
            return
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
        if not job.start():
            return
        try:
            result = job.fn(conn)
        except BaseException as exc:
            _deliver(job, error=exc)
        else:
            _deliver(job, result=result)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        batch = [job for job in batch if job.start()]
        if not batch:
            return
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


def _give_up(job: _Job, timeout: float) -> None:
    """The caller's wait for the thread to start ``job`` is over: a unit still queued is never
    run, and its caller is told so; one already started is waited for (nothing happens here)."""
    if job.abandon() and not job.future.done():
        job.future.set_exception(
            DatabaseUnavailableError(
                f"the database did not take the write within {timeout:g} s; it was not applied",
                "database_timeout",
            )
        )


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
