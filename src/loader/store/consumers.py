"""Consumer reports, kept in the database so every replica sees the whole fleet -- written in
batches, so a long-poll does not cost a write.

A report (the ``X-Loader-Consumer`` header, :mod:`loader.consumer`) is noted in memory as its
request arrives (:meth:`Consumers.seen`). Every ``flush_interval`` the reports noted since go to
the database in one transaction -- but only those that say something new (a higher ``seq``:
the consumer changed) or whose row's ``last_seen`` is older than ``heartbeat`` (half the
``ttl``: a row is at most a heartbeat, a long-poll and a flush old, well inside the ttl while
long-polls hold at most 60 s). A consumer that only long-polls costs one row write per
heartbeat (75 s by default), whatever its poll rate; a change is written within
``flush_interval``. A consumer not seen for ``ttl`` is no longer live (its row
is deleted after ``10 * ttl``). Restart-slot grants and releases write their consumer's report
in their own transaction, at once (:mod:`loader.store.fleet`).

Reading the fleet (:meth:`Consumers.of`) merges the database's rows with this replica's
reports not yet flushed, so a replica shows its own consumers' changes at once and the other
replicas' within ``flush_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from loader.consumer import Report
from loader.errors import LoaderError
from loader.store.fleet import Consumer, Grant, LiveConsumer, Slot
from loader.store.models import Environment, utcnow
from loader.store.repository import Repository

log = logging.getLogger("loader.store")
PURGE_AFTER = 10  # ttls
FULL_FOR = 0.5  # seconds a "every slot taken" answer is given again without the database


@dataclass
class _Written:
    seq: int
    at: float  # monotonic


class Consumers:
    def __init__(
        self,
        repo: Repository,
        *,
        ttl: float = 150.0,
        flush_interval: float = 2.0,
        heartbeat: float | None = None,
        lease: float = 90.0,
    ) -> None:
        self.repo = repo
        self.ttl, self.flush_interval, self.lease = ttl, flush_interval, lease
        self.heartbeat = heartbeat if heartbeat is not None else ttl / 2
        self._pending: dict[tuple[int, str], Consumer] = {}
        self._written: dict[tuple[int, str], _Written] = {}
        self._wakeup = asyncio.Event()
        # What the reporting costs (the metrics, and the bench's store cost per consumer).
        self.reports = 0  # reports received
        self.rows_written = 0  # consumer rows written by the batches
        self.batches = 0  # batch transactions
        self._summary: tuple[float, list[LiveConsumer]] | None = None
        self._grant_locks: dict[int, asyncio.Lock] = {}
        # Per environment: when a runner was last refused because every slot was taken. For
        # FULL_FOR seconds after, new asks (health=waiting) get the same answer without a
        # transaction; renewals by slot holders (health=starting) always reach the database.
        self._full: dict[int, tuple[float, Grant]] = {}

    # -- reports ---------------------------------------------------------------------------

    def seen(self, env: Environment, report: Report) -> None:
        """Note ``report`` (from a request to ``env`` that will be answered at its revision)."""
        self.reports += 1
        if report.kind == "render" and report.rendered is None:
            report.rendered = env.revision  # render --once: what it is about to render
        key = (env.id, report.id)
        written = self._written.get(key)
        if (
            written is not None
            and report.seq <= written.seq
            and time.monotonic() - written.at < self.heartbeat
        ):
            return  # nothing new, and its row is fresh enough
        pending = self._pending.get(key)
        if pending is None or report.seq >= pending.report.seq:
            self._pending[key] = Consumer(env.id, report, utcnow())

    async def flush(self) -> int:
        """Write the reports noted since the last flush (one transaction); returns the rows."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await self.repo.upsert_consumers(list(batch.values()))
        except LoaderError:
            for key, consumer in batch.items():  # kept for the next try (newer ones win)
                self._pending.setdefault(key, consumer)
            raise
        now = time.monotonic()
        for key, consumer in batch.items():
            self._written[key] = _Written(consumer.report.seq, now)
        self.rows_written += len(batch)
        self.batches += 1
        return len(batch)

    def _forget_local(self) -> None:
        stale = time.monotonic() - self.ttl
        for key in [k for k, w in self._written.items() if w.at < stale]:
            del self._written[key]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop(), name="consumer-reports")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(LoaderError):  # the last reports, if the database is up
                await self.flush()

    async def _loop(self) -> None:
        purge_due = time.monotonic() + self.ttl
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
                if time.monotonic() >= purge_due:
                    purge_due = time.monotonic() + self.ttl
                    self._forget_local()
                    await self.repo.forget_consumers(
                        utcnow() - timedelta(seconds=self.ttl * PURGE_AFTER)
                    )
            except LoaderError as exc:  # the database is down: kept, tried again
                log.debug("consumer reports not written yet: %s", exc)

    # -- the fleet -------------------------------------------------------------------------

    def live_since(self) -> datetime:
        return utcnow() - timedelta(seconds=self.ttl)

    async def of(self, env: Environment) -> list[Consumer]:
        """The live consumers of ``env`` (the database's rows, with this replica's newer)."""
        rows = {c.report.id: c for c in await self.repo.list_consumers(env.id, self.live_since())}
        for (env_id, consumer_id), pending in self._pending.items():
            if env_id != env.id:
                continue
            row = rows.get(consumer_id)
            if row is None or pending.report.seq >= row.report.seq:
                rows[consumer_id] = pending
        return [rows[k] for k in sorted(rows)]

    async def live(self, max_age: float) -> list[LiveConsumer]:
        """Every environment's live consumers (for the metrics), read at most every
        ``max_age`` seconds."""
        now = time.monotonic()
        if self._summary is None or now - self._summary[0] >= max_age:
            self._summary = (now, await self.repo.live_consumers(self.live_since()))
        return self._summary[1]

    @property
    def last_live(self) -> list[LiveConsumer]:
        """What :meth:`live` read last (nothing before its first call)."""
        return self._summary[1] if self._summary is not None else []

    # -- restart slots ---------------------------------------------------------------------

    async def acquire(self, env: Environment, report: Report, revision: int) -> Grant:
        """A slot for ``report``'s runner, decided in one transaction -- one at a time per
        environment in this process, so the grants queue here rather than each holding a
        database connection while it waits for the environment's lock. With no budget set,
        every restart may go: the report is noted as a long-poll's is, and nothing locked."""
        full = self._full.get(env.id)
        if report.health == "waiting" and full is not None:
            at, refused = full
            if time.monotonic() - at < FULL_FOR:  # every slot was taken a moment ago
                self.seen(env, report)
                return refused
        if await self.repo.get_rollout_policy(env.id) is None:
            self.seen(env, report)
            return Grant(True, "granted", None, 0)
        consumer = Consumer(env.id, report, utcnow())
        self._pending.pop((env.id, report.id), None)
        async with self._grant_lock(env.id):
            grant = await self.repo.acquire_slot(
                consumer, revision, timedelta(seconds=self.lease), self.live_since()
            )
        self._written[(env.id, report.id)] = _Written(report.seq, time.monotonic())
        if grant.reason == "budget":
            self._full[env.id] = (time.monotonic(), grant)
        else:
            self._full.pop(env.id, None)
        return grant

    def _grant_lock(self, env_id: int) -> asyncio.Lock:
        lock = self._grant_locks.get(env_id)
        if lock is None:
            lock = self._grant_locks[env_id] = asyncio.Lock()
        return lock

    async def release(self, env: Environment, report: Report) -> bool:
        self._pending.pop((env.id, report.id), None)
        self._full.pop(env.id, None)
        # Not behind the grants: giving a slot back only ever lowers the count they read.
        released = await self.repo.release_slot(Consumer(env.id, report, utcnow()))
        self._written[(env.id, report.id)] = _Written(report.seq, time.monotonic())
        return released

    async def slots(self, env: Environment) -> list[Slot]:
        return await self.repo.list_slots(env.id, utcnow())

    async def policy(self, env: Environment) -> str | None:
        return await self.repo.get_rollout_policy(env.id)

    async def set_policy(self, env: Environment, max_unavailable: str | None) -> None:
        await self.repo.set_rollout_policy(env.id, max_unavailable)
