"""The token cache against a small fake repository: what it keeps, and when it reads again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from loader.store.models import TokenRecord
from loader.store.repository import RevocationFeed
from loader.store.tokencache import TokenCache


class FakeRepo(RevocationFeed):
    def __init__(self) -> None:
        super().__init__()
        self.epoch: int | None = 1
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.records = {
            "lt_a": TokenRecord("lt_a", "token", b"d", frozenset({"*"}), None, None, _NOW)
        }

    async def revocation_epoch(self) -> int | None:
        return self.epoch

    async def get_token(self, token_id: str) -> TokenRecord | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.records.get(token_id)

    def revoke(self, token_id: str) -> None:
        self._announce_revoked([token_id])


_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _cache(repo: FakeRepo) -> TokenCache:
    return TokenCache(repo)  # type: ignore[arg-type]


async def test_kept_until_announced_revoked() -> None:
    repo = FakeRepo()
    cache = _cache(repo)
    for _ in range(5):
        assert await cache.get("lt_a") is not None
    assert repo.reads == 1
    repo.revoke("lt_a")
    await cache.get("lt_a")
    assert repo.reads == 2


async def test_no_promise_means_every_lookup_reads() -> None:
    repo = FakeRepo()
    repo.epoch = None  # not listening
    cache = _cache(repo)
    for _ in range(3):
        await cache.get("lt_a")
    assert repo.reads == 3 and len(cache) == 0


async def test_a_new_epoch_forgets_everything() -> None:
    repo = FakeRepo()
    cache = _cache(repo)
    await cache.get("lt_a")
    repo.epoch = 2  # a new LISTEN: announcements may have been missed in between
    await cache.get("lt_a")
    await cache.get("lt_a")
    assert repo.reads == 2


async def test_a_revocation_announced_during_the_read_is_not_kept_over() -> None:
    """The read began before the revocation: its record may predate it, so it is not kept,
    and a look-up after the announcement does not share the older read."""
    repo = FakeRepo()
    repo.gate = asyncio.Event()
    cache = _cache(repo)
    first = asyncio.create_task(cache.get("lt_a"))
    await asyncio.sleep(0)
    repo.revoke("lt_a")
    second = asyncio.create_task(cache.get("lt_a"))
    await asyncio.sleep(0)
    assert repo.reads == 2  # its own read, begun after the announcement
    repo.gate.set()
    await asyncio.gather(first, second)
    assert len(cache) == 1  # only the read begun after the announcement
    await cache.get("lt_a")
    assert repo.reads == 2


async def test_unknown_tokens_are_not_kept() -> None:
    repo = FakeRepo()
    cache = _cache(repo)
    for _ in range(3):
        assert await cache.get("lt_nobody") is None
    assert repo.reads == 3 and len(cache) == 0
