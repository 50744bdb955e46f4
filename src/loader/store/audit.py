"""The audit log: who did what to which secret (names only), and every refusal.

Writes that change secrets put their audit record in the same transaction as the change. Reveals
and refusals are queued here and flushed in batches (one transaction for many records), so a
burst of long-poll reveals costs one fsync, not thousands. An optional JSON-lines file mirrors
every record for shipping to a SIEM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from loader.store.models import AuditEvent, iso
from loader.store.repository import Repository

log = logging.getLogger("loader.audit")

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
    }


class AuditLog:
    def __init__(
        self, repo: Repository, file: Path | None = None, flush_interval: float = 0.05
    ) -> None:
        self.repo = repo
        self.file = file
        self.flush_interval = flush_interval
        self._queue: list[AuditEvent] = []
        self._wakeup = asyncio.Event()
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._closing = False

    def record(self, event: AuditEvent) -> None:
        """Queue an event for the next batch (reveals, refusals)."""
        self._queue.append(event)
        self._wakeup.set()
        self.mirror(event)

    def mirror(self, event: AuditEvent) -> None:
        """Append to the JSON-lines sink (events already stored by their own transaction)."""
        if self._fd is not None:
            line = json.dumps(event_json(event), separators=(",", ":")) + "\n"
            os.write(self._fd, line.encode())

    async def flush(self) -> None:
        """Store every queued record. Also waits for a batch already being written, so that a
        reader who flushes first (the audit route) sees every record recorded before it."""
        async with self._flushing:
            await self._flush_queued()

    async def _flush_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self.repo.append_audit(batch)
            except Exception:  # the store may be briefly unwritable; keep the records
                log.exception("could not write %d audit records; will retry", len(batch))
                self._queue[:0] = batch
                raise

    async def _run(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closing:
                await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                if not self._closing:
                    await asyncio.sleep(1.0)
                self._wakeup.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AuditLog]:
        if self.file is not None:
            self._fd = os.open(
                self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        self._task = asyncio.create_task(self._run(), name="audit-flush")
        try:
            yield self
        finally:
            # Not cancelled: a batch being written must finish (a cancelled write could be lost
            # or stored twice). The loop ends after its current flush.
            self._closing = True
            self._wakeup.set()
            await self._task
            try:
                await self.flush()
            except Exception:
                log.error("dropping %d audit records at shutdown", len(self._queue))
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
