"""The audit queue: a flush waits for the batch already being written, and shutdown finishes
it (a fake repository behind the one method the queue uses, to hold a write open)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from loader.store.audit import AuditLog
from loader.store.models import AuditEvent, utcnow
from loader.store.repository import Repository


class SlowRepo:
    def __init__(self) -> None:
        self.stored: list[AuditEvent] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        self.writing.set()
        await self.release.wait()
        self.stored.extend(events)


def event(action: str) -> AuditEvent:
    return AuditEvent(at=utcnow(), action=action, outcome="ok")


async def test_flush_waits_for_the_batch_in_flight() -> None:
    repo = SlowRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    async with log.running():
        log.record(event("reveal"))
        await repo.writing.wait()  # the background flush holds the only record
        reader = asyncio.ensure_future(log.flush())
        await asyncio.sleep(0.05)
        assert not reader.done()  # an empty queue is not "flushed" while a batch is in flight
        repo.release.set()
        await reader
        assert [e.action for e in repo.stored] == ["reveal"]


async def test_shutdown_finishes_the_batch_being_written_and_what_is_queued() -> None:
    repo = SlowRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    running = log.running()
    await running.__aenter__()
    log.record(event("first"))
    await repo.writing.wait()
    log.record(event("second"))
    closing: Any = asyncio.ensure_future(running.__aexit__(None, None, None))
    await asyncio.sleep(0.05)
    assert not closing.done()
    repo.release.set()
    await closing
    assert [e.action for e in repo.stored] == ["first", "second"]
