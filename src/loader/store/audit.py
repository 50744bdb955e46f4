"""The audit log: who did what to which secret (names only), and every refusal.

Writes that change secrets put their audit record in the same transaction as the change. Reveals
are queued here and flushed in batches (one transaction for many records), so a burst of
long-poll reveals costs one fsync, not thousands; identical reveals waiting in the queue (the
same token, environment, names and client) become one record with a ``count`` -- a write that
wakes 10,000 watchers of one token stores one row, not 10,000. Refusals are counted
(:mod:`loader.store.refusals`) and queued as one record per client and kind every
``refusal_interval`` seconds (or when the audit is read). An optional JSON-lines file mirrors
every record for shipping to a SIEM; SIGHUP reopens it (log rotation).

Audit that cannot be lost quietly: the queue is bounded (``max_queue``). While the audit cannot
be written -- the last batch failed to store, the queue is full, or the file refuses a line -- a
reveal is refused (:class:`~loader.errors.AuditUnavailableError`, 503) rather than served
unaudited, as Vault does for its audit devices; ``fail_open`` chooses the opposite (records that
do not fit are then dropped, counted and logged). Each change of state is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from loader.errors import AuditUnavailableError, DatabaseUnavailableError
from loader.store.models import AuditEvent, audit_key, iso
from loader.store.refusals import RefusalTally
from loader.store.repository import Repository

log = logging.getLogger("loader.audit")
BATCH = 1000  # audit records stored per transaction
MERGED = frozenset({"reveal"})  # actions whose identical queued records are counted, not repeated

# One vocabulary for what was done and what was refused (a refused request is recorded under
# the action it attempted, with outcome unauthorized/forbidden).
ACTIONS = frozenset(
    {
        "create_app",
        "delete_app",
        "create_environment",
        "delete_environment",
        "upsert_secret",
        "declare_secret",
        "update_secret",
        "set_value",
        "delete_secret",
        "rollback_secret",
        "reveal",
        "issue_access_token",
        # read routes: recorded only when refused
        "list_apps",
        "get_app",
        "list_environments",
        "get_environment",
        "list_secrets",
        "get_secret",
        "list_versions",
        "read_rendered",
        "list_audit",
        "list_consumers",
        "get_rollout",
        "set_rollout",
        "acquire_restart",
        "release_restart",
    }
)


def event_json(event: AuditEvent) -> dict[str, object]:
    return {
        "at": iso(event.at),
        "token_id": event.token_id,
        "app_id": event.app_id,
        "action": event.action,
        "environment": event.environment,
        "name": event.names[0] if len(event.names) == 1 else None,
        "names": list(event.names),
        "outcome": event.outcome,
        "client": event.client,
        "count": event.count,
        "subject": event.subject,
        "reason": event.reason,
    }


class AuditLog:
    def __init__(
        self,
        repo: Repository,
        file: Path | None = None,
        flush_interval: float = 0.05,
        *,
        max_queue: int = 10_000,
        fail_open: bool = False,
        shutdown_grace: float = 5.0,
        refusal_interval: float = 10.0,
    ) -> None:
        self.repo, self.file = repo, file
        self.flush_interval, self.max_queue, self.fail_open = flush_interval, max_queue, fail_open
        self.shutdown_grace, self.refusal_interval = shutdown_grace, refusal_interval
        self._refusals = RefusalTally()
        self._refusals_due: asyncio.TimerHandle | None = None
        self._queue: list[AuditEvent] = []
        # Where each mergeable record waits in the queue, and the twins counted into it so far
        # (added to its count before the queue is cut: ``_settle``).
        self._merge: dict[tuple[object, ...], int] = {}
        self._twins: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._closing = False
        self._stopping = asyncio.Event()
        self.store_failure: str | None = None  # why the last batch could not be stored
        self.file_failure: str | None = None  # why the last line could not be appended
        self.dropped = 0  # records lost to a full queue (fail_open, or refusals)
        self._overflowing = False

    # -- state -------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def problem(self) -> str | None:
        """Why a record could not be written now (None: the audit is healthy)."""
        if self.store_failure is not None:
            return f"audit records cannot be stored ({self.store_failure})"
        if len(self._queue) >= self.max_queue:
            return f"the audit queue is full ({self.max_queue} records waiting)"
        if self.file_failure is not None:
            return f"the audit file cannot be written ({self.file_failure})"
        return None

    # -- recording ---------------------------------------------------------------------------

    def record(self, event: AuditEvent, *, required: bool = False) -> None:
        """Queue an event for the next batch (reveals, refusals). ``required``: the caller
        must not go on unaudited (a reveal): raises AuditUnavailableError when the record
        cannot be written, unless the log fails open."""
        guard = required and not self.fail_open
        if guard:
            self._check_writable()
        self._add(event, guard)

    def reveal(self, key: tuple[object, ...], event: Callable[[], AuditEvent]) -> None:
        """Record a reveal (required, as :meth:`record`): counted into its twin when one waits
        in the queue -- ``key`` is the record's ``audit_key``, and ``event`` builds the record
        only when it is needed (a new one, or a line for the audit file)."""
        guard = not self.fail_open
        if guard:
            self._check_writable()
        if self._fd is None:
            at = self._merge.get(key)
            if at is not None:
                self._twins[at] = self._twins.get(at, 0) + 1
                return
        self._add(event(), guard)

    def _check_writable(self) -> None:
        problem = self.problem()
        if problem is not None and self.file_failure is None:
            raise AuditUnavailableError(f"reveal refused: {problem}")

    def _add(self, event: AuditEvent, guard: bool) -> None:
        """Mirror ``event`` to the audit file, then count it into its queued twin or queue it."""
        self._mirror(event, raise_on_failure=guard)
        key = _merge_key(event)
        if key is not None:
            at = self._merge.get(key)
            if at is not None:
                self._twins[at] = self._twins.get(at, 0) + event.count
                return
        if len(self._queue) >= self.max_queue:
            self._settle()
            self._queue.pop(0)
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.error(
                    "the audit queue is full (%d records): dropping the oldest until it drains",
                    self.max_queue,
                )
        if key is not None:
            self._merge[key] = len(self._queue)
        self._queue.append(event)
        self._wakeup.set()

    def _settle(self) -> None:
        """Add the counted twins to their records; the queue may then be cut or shifted."""
        for at, twins in self._twins.items():
            queued = self._queue[at]
            self._queue[at] = replace(queued, count=queued.count + twins)
        self._twins.clear()
        self._merge.clear()

    def refused(self, event: AuditEvent) -> None:
        """Count a refusal; its record is queued at the end of the interval."""
        self._refusals.add(event)
        if self._refusals_due is None:
            loop = asyncio.get_running_loop()
            self._refusals_due = loop.call_later(self.refusal_interval, self._queue_refusals)

    def _queue_refusals(self) -> None:
        if self._refusals_due is not None:
            self._refusals_due.cancel()
            self._refusals_due = None
        for event in self._refusals.drain():
            self.record(event)

    def mirror(self, event: AuditEvent) -> None:
        """Append to the JSON-lines sink (events already stored by their own transaction)."""
        self._mirror(event, raise_on_failure=False)

    def _mirror(self, event: AuditEvent, *, raise_on_failure: bool) -> None:
        if self._fd is None:
            return
        line = (json.dumps(event_json(event), separators=(",", ":")) + "\n").encode()
        try:
            _append(self._fd, line)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if self.file_failure is None:
                log.error("cannot append to the audit file %s: %s", self.file, reason)
            self.file_failure = reason
            if raise_on_failure:
                raise AuditUnavailableError(
                    f"reveal refused: the audit file cannot be written ({reason})"
                ) from None
            return
        if self.file_failure is not None:
            log.warning("the audit file %s is writable again", self.file)
            self.file_failure = None

    def reopen(self) -> None:
        """Reopen the audit file at its path (after ``logrotate`` moved it; SIGHUP)."""
        if self.file is None:
            return
        fd = _open(self.file)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)
        log.info("reopened the audit file %s", self.file)

    # -- flushing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Store every queued record and the refusals counted so far. Also waits for a batch
        already being written, so that a reader who flushes first (the audit route) sees every
        record recorded before it."""
        self._queue_refusals()
        await self._store_queued()

    async def _store_queued(self, upto: int | None = None) -> None:
        async with self._flushing:
            await self._flush_queued(upto)

    async def _flush_queued(self, upto: int | None) -> None:
        """Store the queue (``upto``: at most that many records, those queued first)."""
        while self._queue and (upto is None or upto > 0):
            # In bounded batches: one write that wakes 10,000 watchers queues 10,000 reveals,
            # and a single insert of them all can outlast the statement timeout.
            size = BATCH if upto is None else min(BATCH, upto)
            self._settle()
            batch, self._queue = self._queue[:size], self._queue[size:]
            if upto is not None:
                upto -= len(batch)
            try:
                await self.repo.append_audit(batch)
            except Exception as exc:  # the store may be briefly unwritable; keep the records
                self._settle()
                self._queue[:0] = batch
                excess = len(self._queue) - self.max_queue
                if excess > 0:  # what was recorded meanwhile, past the bound: the oldest go
                    del self._queue[:excess]
                    self.dropped += excess
                self._failed(exc, len(batch))
                raise
            if self.store_failure is not None:
                log.warning("audit records are stored again (%d written)", len(batch))
                self.store_failure = None
            if self._overflowing and len(self._queue) < self.max_queue:
                self._overflowing = False

    def _failed(self, exc: Exception, count: int) -> None:
        reason = exc.message if isinstance(exc, DatabaseUnavailableError) else repr(exc)
        if self.store_failure is None:
            if isinstance(exc, DatabaseUnavailableError):
                log.error("cannot store %d audit records (%s); retrying", count, reason)
            else:
                log.exception("cannot store %d audit records; retrying", count)
        self.store_failure = reason

    async def _run(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closing:
                with contextlib.suppress(TimeoutError):  # shutdown does not wait it out
                    await asyncio.wait_for(self._stopping.wait(), self.flush_interval)
            try:
                # What is queued now; what arrives during the write waits for the next interval
                # (under steady load one commit per interval, not one after another).
                await self._store_queued(len(self._queue))
            except Exception:
                if not self._closing:
                    await asyncio.sleep(0.5)
                self._wakeup.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AuditLog]:
        if self.file is not None:
            self._fd = _open(self.file)
        self._task = asyncio.create_task(self._run(), name="audit-flush")
        try:
            yield self
        finally:
            # Not cancelled: a batch being written must finish (a cancelled write could be lost
            # or stored twice). The loop ends after its current flush.
            self._closing = True
            self._stopping.set()
            self._wakeup.set()
            await self._task
            await self._last_flush()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    async def _last_flush(self) -> None:
        """At shutdown, keep trying for ``shutdown_grace`` seconds before giving up."""
        deadline = time.monotonic() + self.shutdown_grace
        while True:
            try:
                await self.flush()
                return
            except Exception:
                if time.monotonic() >= deadline:
                    log.error(
                        "dropping %d audit records at shutdown: they could not be stored "
                        "(the audit file, if any, has them)",
                        len(self._queue),
                    )
                    return
                await asyncio.sleep(0.5)


def _merge_key(event: AuditEvent) -> tuple[object, ...] | None:
    """``event``'s merge key, or None when its action is never merged."""
    return audit_key(event) if event.action in MERGED else None


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _append(fd: int, line: bytes) -> None:
    """One whole line or nothing: a short write (disk full) is cut back off."""
    size = os.fstat(fd).st_size
    written = os.write(fd, line)
    if written != len(line):
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise OSError(errno.ENOSPC, "No space left on device (short write)")
