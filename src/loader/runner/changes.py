"""``--watch``: follow a source for as long as the runner runs, and let changes settle.

The source's follower is one long-lived task that puts every set of values it reads into a
queue (:func:`follow_into`); if it ever ends or fails, that is logged and it is started again
with backoff (:func:`loader.backoff.keep_running`). Debouncing only ever waits on the queue
(:func:`settle`): nothing is cancelled inside the follower, so no change is lost while a
restart, a debounce or a splay is under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import NoReturn, Protocol

from loader.backoff import Backoff, keep_running

log = logging.getLogger("loader.run")
Values = dict[str, str]


class Followable(Protocol):
    def describe(self) -> str: ...

    def follow(self) -> AsyncIterator[Values]: ...


async def _pump(source: Followable, queue: asyncio.Queue[Values]) -> None:
    last = None
    async for values in source.follow():
        if values != last:  # a file's periodic re-read, an agent's restart: same values
            queue.put_nowait(values)
            last = values


def follow_into(source: Followable, queue: asyncio.Queue[Values]) -> asyncio.Task[NoReturn]:
    """Start following ``source`` into ``queue``; cancel the task to stop."""
    return asyncio.create_task(
        keep_running(
            f"following {source.describe()}",
            lambda: _pump(source, queue),
            Backoff(0.5, 15.0),
            log,
        ),
        name="follow-source",
    )


async def settle(queue: asyncio.Queue[Values], quiet: float) -> Values:
    """The next change, once ``quiet`` seconds pass without another (the last one wins)."""
    values = await queue.get()
    while True:
        try:
            async with asyncio.timeout(quiet):
                values = await queue.get()  # cancelling a get loses nothing
        except TimeoutError:
            return values


def latest(queue: asyncio.Queue[Values], values: Values) -> Values:
    """``values``, or whatever came after it and is already waiting."""
    while not queue.empty():
        values = queue.get_nowait()
    return values
