"""In-process change notifier: long-poll watchers wait on it, committed writes wake them.

No sleep loop: a waiter parks on a future; :meth:`ChangeNotifier.publish` resolves every future
parked on that environment in one pass, so thousands of watchers wake within the same loop turn.
Timeouts are grouped into 100 ms buckets, one timer each, not one timer per waiter: ten thousand
idle watchers cost ten thousand futures and a few dozen timers.

An optional ``prepare`` hook runs before the waiters of a change are woken (the store uses it to
decrypt the new revision once): woken watchers then answer at once instead of all waking to wait
again for the one read they share.

A waiter may name its ``holder`` (the token it waits for): :meth:`ChangeNotifier.interrupt` wakes
every waiter of one holder at once (a revoked token), and :meth:`ChangeNotifier.holding` counts
them (a cap per token).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("loader.store")
Prepare = Callable[[Any, int], Awaitable[None]]


class ChangeNotifier:
    def __init__(self, prepare: Prepare | None = None) -> None:
        self._latest: dict[int, int] = {}
        self._waiters: dict[int, set[asyncio.Future[bool]]] = {}
        self._contexts: dict[int, Any] = {}
        self._deadlines: dict[int, set[asyncio.Future[bool]]] = {}
        self._holders: dict[str, set[asyncio.Future[bool]]] = {}
        self._closed = False
        self._prepare = prepare
        self._preparing: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Release every waiter (they answer "unchanged") and stop holding new ones."""
        self._closed = True
        waiters, self._waiters = self._waiters, {}
        for group in waiters.values():
            for fut in group:
                if not fut.done():
                    fut.set_result(False)

    def latest(self, env_id: int) -> int | None:
        return self._latest.get(env_id)

    def publish(self, env_id: int, revision: int) -> None:
        """Record ``revision`` for ``env_id`` and wake its waiters if it is news."""
        if revision <= self._latest.get(env_id, -1):
            return
        self._latest[env_id] = revision
        waiters = self._waiters.pop(env_id, None)
        context = self._contexts.pop(env_id, None)
        if not waiters:
            return
        if self._prepare is None or context is None or self._closed:
            _wake(waiters)
            return
        task = asyncio.get_running_loop().create_task(
            self._prepare_then_wake(context, revision, waiters)
        )
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _prepare_then_wake(
        self, context: Any, revision: int, waiters: set[asyncio.Future[bool]]
    ) -> None:
        try:
            assert self._prepare is not None
            await self._prepare(context, revision)
        except Exception:  # the waiters will meet (and report) the error themselves
            log.debug("preparing revision %d failed", revision, exc_info=True)
        finally:
            _wake(waiters)

    def holding(self, holder: str) -> int:
        """How many waiters ``holder`` has parked."""
        held = self._holders.get(holder)
        return len(held) if held else 0

    def interrupt(self, holder: str) -> int:
        """Wake every waiter of ``holder`` now (they answer as if changed, and re-check who
        they wait for). Returns how many were woken."""
        held = self._holders.pop(holder, None)
        if not held:
            return 0
        _wake(held)
        return len(held)

    def watched(self) -> list[int]:
        return list(self._waiters)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def wait(
        self,
        env_id: int,
        known_revision: int,
        timeout: float,
        context: Any = None,
        holder: str | None = None,
    ) -> bool:
        """Until ``env_id`` moves past ``known_revision`` (True) or ``timeout`` passes (False).

        ``context`` is handed to the ``prepare`` hook when the change comes; ``holder`` names
        who waits, for :meth:`interrupt` and :meth:`holding`."""
        if self._latest.get(env_id, -1) > known_revision:
            return True
        if self._closed:
            return False
        self._latest.setdefault(env_id, known_revision)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.setdefault(env_id, set()).add(fut)
        if context is not None:
            self._contexts[env_id] = context
        tick = math.ceil((loop.time() + timeout) * 10)
        bucket = self._deadlines.get(tick)
        if bucket is None:
            bucket = self._deadlines[tick] = set()
            loop.call_at(tick / 10, self._expire, tick)
        bucket.add(fut)
        if holder is not None:
            self._holders.setdefault(holder, set()).add(fut)
        try:
            return await fut
        finally:
            bucket.discard(fut)
            if holder is not None:
                held = self._holders.get(holder)
                if held is not None:
                    held.discard(fut)
                    if not held:
                        del self._holders[holder]
            current = self._waiters.get(env_id)
            if current is not None:
                current.discard(fut)
                if not current:
                    del self._waiters[env_id]

    def _expire(self, tick: int) -> None:
        for fut in self._deadlines.pop(tick, ()):
            if not fut.done():
                fut.set_result(False)


def _wake(waiters: set[asyncio.Future[bool]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(True)
