"""In-process change notifier: long-poll watchers wait on it, committed writes wake them.

No sleep loop: a waiter parks on a future; :meth:`ChangeNotifier.publish` resolves every future
parked on that environment in one pass, so thousands of watchers wake within the same loop turn.
"""

from __future__ import annotations

import asyncio


class ChangeNotifier:
    def __init__(self) -> None:
        self._latest: dict[int, int] = {}
        self._waiters: dict[int, set[asyncio.Future[bool]]] = {}
        self._closed = False

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
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def watched(self) -> list[int]:
        return list(self._waiters)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def wait(self, env_id: int, known_revision: int, timeout: float) -> bool:
        """Until ``env_id`` moves past ``known_revision`` (True) or ``timeout`` passes (False)."""
        if self._latest.get(env_id, -1) > known_revision:
            return True
        if self._closed:
            return False
        self._latest.setdefault(env_id, known_revision)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        waiters = self._waiters.setdefault(env_id, set())
        waiters.add(fut)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            current = self._waiters.get(env_id)
            if current is not None:
                current.discard(fut)
                if not current:
                    del self._waiters[env_id]


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
