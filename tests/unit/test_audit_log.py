"""The audit queue: a flush waits for the batch already being written, and shutdown finishes
it (a fake repository behind the one method the queue uses, to hold a write open)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

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


class FailingRepo:
    def __init__(self) -> None:
        self.fail = True
        self.stored: list[AuditEvent] = []

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        if self.fail:
            from loader.errors import DatabaseUnavailableError

            raise DatabaseUnavailableError("disk full", "disk_full")
        self.stored.extend(events)


async def test_reveals_are_refused_while_records_cannot_be_stored_then_served_again() -> None:
    from loader.errors import AuditUnavailableError

    repo = FailingRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    async with log.running():
        log.record(event("reveal"), required=True)  # accepted: nothing has failed yet
        while log.store_failure is None:
            await asyncio.sleep(0.01)
        with pytest.raises(AuditUnavailableError):
            log.record(event("reveal"), required=True)
        log.record(event("refused"))  # a refusal is still queued (it was refused anyway)
        repo.fail = False
        while log.store_failure is not None:
            await asyncio.sleep(0.01)
        log.record(event("reveal"), required=True)
    assert [e.action for e in repo.stored] == ["reveal", "refused", "reveal"]


async def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    repo = FailingRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0, max_queue=10, fail_open=True)
    async with log.running():
        for i in range(25):
            log.record(event(f"e{i}"), required=True)  # fail_open: served, never refused
            await asyncio.sleep(0)
        assert log.queue_depth <= 10
        assert log.dropped >= 15
        repo.fail = False
    assert [e.action for e in repo.stored][-1] == "e24"


async def test_a_failing_audit_file_refuses_reveals_and_a_rotation_is_reopened(
    tmp_path: Path,
) -> None:
    from loader.errors import AuditUnavailableError

    repo = SlowRepo()
    repo.release.set()
    full = AuditLog(cast(Repository, repo), Path("/dev/full"), flush_interval=0)
    async with full.running():
        with pytest.raises(AuditUnavailableError):
            full.record(event("reveal"), required=True)
        full.record(event("refused"))  # not required: kept in the database all the same
    assert [e.action for e in repo.stored] == ["refused"]

    path = tmp_path / "audit.jsonl"
    log = AuditLog(cast(Repository, repo), path, flush_interval=0)
    async with log.running():
        log.record(event("one"))
        path.rename(tmp_path / "audit.jsonl.1")
        log.reopen()
        log.record(event("two"))
    assert '"action":"one"' in (tmp_path / "audit.jsonl.1").read_text()
    assert '"action":"two"' in path.read_text()
    assert '"action":"one"' not in path.read_text()


async def test_a_large_queue_is_stored_in_bounded_batches() -> None:
    """10,000 woken watchers queue 10,000 reveals at once: stored in transactions of at most
    BATCH records, in order, none lost."""
    from loader.store.audit import BATCH

    class Recording:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        async def append_audit(self, events: Sequence[AuditEvent]) -> None:
            self.batches.append([e.action for e in events])

    repo = Recording()
    log = AuditLog(cast(Repository, repo), flush_interval=0, max_queue=10 * BATCH)
    names = [f"reveal-{i}" for i in range(2 * BATCH + 7)]
    for name in names:
        log.record(event(name))
    await log.flush()
    assert [len(b) for b in repo.batches] == [BATCH, BATCH, 7]
    assert [a for b in repo.batches for a in b] == names


def reveal(
    token: str = "t1", names: tuple[str, ...] = ("A",), client: str = "10.0.0.1"
) -> AuditEvent:
    return AuditEvent(
        at=utcnow(),
        action="reveal",
        outcome="ok",
        token_id=token,
        app_id=1,
        environment="default",
        names=names,
        client=client,
    )


class Storing:
    def __init__(self) -> None:
        self.batches: list[list[AuditEvent]] = []

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        self.batches.append(list(events))


async def test_identical_reveals_waiting_in_the_queue_are_one_record_with_a_count() -> None:
    """10,000 woken watchers of one token: one row counting them; a different token, name set or
    client is its own record; order is first appearance; other actions are never merged."""
    repo = Storing()
    log = AuditLog(cast(Repository, repo), flush_interval=0, max_queue=10)
    first = reveal()
    log.record(first)
    for _ in range(9_999):
        log.record(reveal())  # past max_queue many times over: merged records take no room
    log.record(reveal(token="t2"))
    log.record(reveal(names=("A", "B")))
    log.record(reveal(client="10.0.0.2"))
    log.record(reveal(token="t2"))
    log.record(event("create_app"))
    log.record(event("create_app"))
    await log.flush()
    stored = [e for b in repo.batches for e in b]
    assert [(e.token_id, e.names, e.client, e.count) for e in stored if e.action == "reveal"] == [
        ("t1", ("A",), "10.0.0.1", 10_000),
        ("t2", ("A",), "10.0.0.1", 2),
        ("t1", ("A", "B"), "10.0.0.1", 1),
        ("t1", ("A",), "10.0.0.2", 1),
    ]
    assert stored[0].at == first.at  # the first one's time
    assert [e.count for e in stored if e.action == "create_app"] == [1, 1]
    assert log.dropped == 0


async def test_a_reveal_is_not_merged_into_a_batch_already_being_written() -> None:
    """Records merge only while they wait for the same batch: one that arrives while its twin is
    being stored is stored by the next batch, and a failed batch put back merges again."""
    repo = SlowRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    async with log.running():
        log.record(reveal())
        await repo.writing.wait()
        log.record(reveal())
        log.record(reveal())
        repo.release.set()
        await log.flush()
    assert [e.count for e in repo.stored] == [1, 2]


async def test_a_batch_that_fails_is_put_back_and_later_twins_still_count() -> None:
    class FailingOnce:
        def __init__(self) -> None:
            self.calls = 0
            self.stored: list[AuditEvent] = []

        async def append_audit(self, events: Sequence[AuditEvent]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk gone")
            self.stored.extend(events)

    repo = FailingOnce()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    log.record(reveal())
    log.record(reveal())
    with pytest.raises(OSError):
        await log.flush()
    log.record(reveal())  # after the put-back: appended (the index was cleared), not lost
    await log.flush()
    assert sum(e.count for e in repo.stored) == 3
    assert [e.count for e in repo.stored] == [2, 1]


async def test_records_queued_during_a_write_wait_for_the_next_interval() -> None:
    """Under steady load the background flush commits once per interval: what arrives while a
    batch is written is not written straight after it (that was one fsync after another)."""
    repo = SlowRepo()
    log = AuditLog(cast(Repository, repo), flush_interval=0)
    async with log.running():
        log.record(event("first"))
        await repo.writing.wait()
        log.flush_interval = 30.0
        log.record(event("second"))
        repo.release.set()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert [e.action for e in repo.stored] == ["first"]
        assert log.queue_depth == 1
        await log.flush()  # an explicit flush (the audit route, shutdown) stores everything
        assert [e.action for e in repo.stored] == ["first", "second"]


def test_a_calls_reveal_key_is_the_merge_key_of_its_reveal_record() -> None:
    """The handler counts a reveal by its key without building the record: the key must be the
    record's own (else twins would not merge, or different reveals would)."""
    from types import SimpleNamespace

    from loader.server.handlers import ROUTES
    from loader.server.routing import Call
    from loader.store.auth import Principal
    from loader.store.models import audit_key as merge_key

    route = next(r for r in ROUTES if r.path.endswith("/rendered"))
    for subject in (None, "system:serviceaccount:ns:app"):
        request: Any = SimpleNamespace(remote="10.1.2.3")
        principal = Principal("lt_0123456789ab", frozenset({"*"}), subject=subject)
        call: Call[Any] = Call(request, route, cast(Any, None), principal, 7, "staging")
        for names in ((), ("A",), ("A", "B")):
            assert call.reveal_key(names) == merge_key(call.event("reveal", names=names))


async def test_reveals_counted_by_key_still_mirror_every_line_and_refuse_when_unwritable(
    tmp_path: Path,
) -> None:
    from loader.errors import AuditUnavailableError
    from loader.store.models import audit_key as merge_key

    repo = Storing()
    path = tmp_path / "audit.jsonl"
    log = AuditLog(cast(Repository, repo), file=path, flush_interval=30.0)
    built = 0

    def make() -> AuditEvent:
        nonlocal built
        built += 1
        return reveal()

    async with log.running():
        for _ in range(3):
            log.reveal(merge_key(reveal()), make)
        await log.flush()
    assert built == 3  # with an audit file every reveal is a line of its own
    assert len(path.read_text().splitlines()) == 3
    assert [e.count for b in repo.batches for e in b] == [3]

    unfiled = AuditLog(cast(Repository, Storing()), flush_interval=30.0, max_queue=2)
    built = 0
    unfiled.reveal(merge_key(reveal()), make)
    unfiled.reveal(merge_key(reveal()), make)
    assert built == 1  # the twin was counted without building its record
    other = reveal(token="t9")
    unfiled.reveal(merge_key(other), lambda: other)
    assert unfiled.queue_depth == 2
    with pytest.raises(AuditUnavailableError):  # the queue is full: any reveal is refused
        unfiled.reveal(merge_key(reveal()), make)
