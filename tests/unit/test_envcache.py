"""The environment cache against a small fake database: what it keeps, and when it reads again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from loader.store.envcache import EnvironmentCache
from loader.store.models import Environment

_NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeDb:
    def __init__(self) -> None:
        self.epoch: int | None = 1
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.rows = {(1, name): Environment(i, 1, name, 0, _NOW) for i, name in enumerate("abc")}

    async def read(self, app_id: int, name: str) -> Environment | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.rows.get((app_id, name))

    def write(self, cache: EnvironmentCache, name: str) -> None:
        """A committed change to environment ``name``, announced."""
        env = self.rows[(1, name)]
        self.rows[(1, name)] = Environment(env.id, 1, name, env.revision + 1, _NOW)
        cache.changed(env.id, env.revision + 1)


def _cache(db: FakeDb, **options: float) -> EnvironmentCache:
    return EnvironmentCache(db.read, lambda: db.epoch, **options)  # type: ignore[arg-type]


async def test_kept_until_a_change_is_announced() -> None:
    db = FakeDb()
    cache = _cache(db)
    for _ in range(5):
        assert (await cache.get(1, "a")) == db.rows[(1, "a")]
    assert db.reads == 1
    db.write(cache, "b")  # another environment's change: "a" stays
    await cache.get(1, "a")
    assert db.reads == 1
    for n in range(1, 4):  # successive changes, each read once
        db.write(cache, "a")
        for _ in range(3):
            got = await cache.get(1, "a")
            assert got is not None and got.revision == n
        assert db.reads == 1 + n


async def test_an_announcement_the_record_is_already_at_keeps_it() -> None:
    """The committing replica hears its own change twice: at commit, then by NOTIFY."""
    db = FakeDb()
    cache = _cache(db)
    db.write(cache, "a")  # at commit
    await cache.get(1, "a")
    cache.changed(0, 1)  # its NOTIFY, after the record was read again
    cache.changed(0, 0)
    await cache.get(1, "a")
    assert db.reads == 1
    cache.changed(0, 2)  # a newer change
    await cache.get(1, "a")
    assert db.reads == 2


async def test_no_epoch_means_every_lookup_reads() -> None:
    db = FakeDb()
    db.epoch = None  # not listening
    cache = _cache(db)
    for _ in range(3):
        await cache.get(1, "a")
    assert db.reads == 3 and len(cache) == 0


async def test_a_new_epoch_forgets_everything() -> None:
    db = FakeDb()
    cache = _cache(db)
    await cache.get(1, "a")
    db.epoch = None  # the LISTEN connection dropped: changes may go unheard
    db.rows[(1, "a")] = Environment(0, 1, "a", 7, _NOW)  # (unannounced)
    got = await cache.get(1, "a")
    assert got is not None and got.revision == 7
    db.epoch = 2
    for _ in range(3):
        got = await cache.get(1, "a")
        assert got is not None and got.revision == 7
    assert db.reads == 3


async def test_a_change_announced_during_the_read_is_not_kept_over() -> None:
    """The read began before the change: a look-up after the announcement does not share it
    (its answer may predate the change) but reads again."""
    db = FakeDb()
    db.gate = asyncio.Event()
    cache = _cache(db)
    first = asyncio.create_task(cache.get(1, "a"))
    await asyncio.sleep(0)
    db.write(cache, "a")
    second = asyncio.create_task(cache.get(1, "a"))
    await asyncio.sleep(0)
    assert db.reads == 2  # its own read, begun after the announcement
    db.gate.set()
    await asyncio.gather(first, second)
    assert len(cache) == 1
    await cache.get(1, "a")
    assert db.reads == 2


async def test_a_stale_read_is_never_kept() -> None:
    """The database answers with the row as it was before a change announced meanwhile (the
    read's snapshot predates the commit): the stale row is returned once, not kept."""
    db = FakeDb()
    cache = _cache(db)
    old = db.rows[(1, "a")]

    async def stale_read(app_id: int, name: str) -> Environment | None:
        db.reads += 1
        db.write(cache, "a")  # committed and announced while this answer travels
        return old

    cache._read_db = stale_read
    assert await cache.get(1, "a") == old
    cache._read_db = db.read
    got = await cache.get(1, "a")
    assert got is not None and got.revision == 1 and db.reads == 2


async def _kept_after(db: FakeDb, cache: EnvironmentCache, meanwhile: Callable[[], object]) -> int:
    """How many records the cache keeps after reading "a" while ``meanwhile`` happens."""
    db.gate = asyncio.Event()
    reading = asyncio.create_task(cache.get(1, "a"))
    await asyncio.sleep(0)
    meanwhile()
    db.gate.set()
    await reading
    return len(cache)


async def test_changes_to_other_environments_during_the_read_do_not_stop_keeping() -> None:
    db = FakeDb()
    cache = _cache(db)
    assert await _kept_after(db, cache, lambda: db.write(cache, "b")) == 1


async def test_an_epoch_change_or_a_clear_during_the_read_is_not_kept_over() -> None:
    db = FakeDb()
    cache = _cache(db)
    assert await _kept_after(db, cache, lambda: setattr(db, "epoch", 2)) == 0
    assert await _kept_after(db, cache, cache.clear) == 0


async def test_misses_are_not_kept() -> None:
    db = FakeDb()
    cache = _cache(db)
    assert await cache.get(1, "new") is None
    db.rows[(1, "new")] = Environment(9, 1, "new", 0, _NOW)  # created (no announcement)
    assert await cache.get(1, "new") == db.rows[(1, "new")]


async def test_simultaneous_lookups_share_one_read() -> None:
    db = FakeDb()
    db.gate = asyncio.Event()
    cache = _cache(db)
    lookups = [asyncio.create_task(cache.get(1, "a")) for _ in range(1000)]
    await asyncio.sleep(0)
    db.gate.set()
    assert {e.id for e in await asyncio.gather(*lookups) if e is not None} == {0}
    assert db.reads == 1


async def test_bounded_and_read_again_after_max_age() -> None:
    db = FakeDb()
    cache = _cache(db, max_entries=2)
    for name in "abc":
        await cache.get(1, name)
    assert len(cache) == 2
    await cache.get(1, "b")
    await cache.get(1, "c")
    assert db.reads == 3  # "a", the oldest, went
    await cache.get(1, "a")
    assert db.reads == 4
    aged = _cache(db, max_age=0.0)
    await aged.get(1, "a")
    await aged.get(1, "a")
    assert db.reads == 6
