"""loader.runner.changes: one long-lived follower per source, and debouncing on its queue.

The source is a fake behind the two-method interface the module needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from loader.runner.changes import Values, follow_into, latest, settle


class FlakySource:
    """Yields each script step's values; a step that is an exception is raised, and a None
    step ends the iteration (both as a real follower might, by a bug)."""

    def __init__(self, script: list[Values | Exception | None]) -> None:
        self.script = script
        self.follows = 0

    def describe(self) -> str:
        return "a flaky source"

    async def follow(self) -> AsyncIterator[Values]:
        self.follows += 1
        while self.script:
            step = self.script.pop(0)
            if step is None:
                return
            if isinstance(step, Exception):
                raise step
            yield step
        await asyncio.Event().wait()


async def test_follower_outlives_failures_and_ends_and_drops_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("loader.runner.changes.Backoff.next", lambda self, *a, **k: 0.01)
    source = FlakySource(
        [{"A": "1"}, {"A": "1"}, RuntimeError("bug"), {"A": "2"}, None, {"A": "3"}, {"A": "3"}]
    )
    queue: asyncio.Queue[Values] = asyncio.Queue()
    task = follow_into(source, queue)
    got = [await asyncio.wait_for(queue.get(), 5) for _ in range(3)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [{"A": "1"}, {"A": "2"}, {"A": "3"}]
    assert source.follows == 3 and queue.empty()


async def test_settle_waits_for_quiet_and_keeps_the_last() -> None:
    queue: asyncio.Queue[Values] = asyncio.Queue()

    async def burst() -> None:
        for i in range(10):
            queue.put_nowait({"A": str(i)})
            await asyncio.sleep(0.005)

    feeder = asyncio.create_task(burst())
    assert await settle(queue, 0.2) == {"A": "9"}
    await feeder
    assert queue.empty()


async def test_settle_with_no_debounce_takes_what_is_already_there() -> None:
    queue: asyncio.Queue[Values] = asyncio.Queue()
    for i in range(3):
        queue.put_nowait({"A": str(i)})
    assert await settle(queue, 0) == {"A": "2"}


def test_latest_drains_the_queue() -> None:
    queue: asyncio.Queue[Values] = asyncio.Queue()
    assert latest(queue, {"A": "0"}) == {"A": "0"}
    queue.put_nowait({"A": "1"})
    queue.put_nowait({"A": "2"})
    assert latest(queue, {"A": "0"}) == {"A": "2"} and queue.empty()
