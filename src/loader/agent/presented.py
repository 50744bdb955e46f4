"""What the agent presents, and how fresh it is.

``rendered`` is the last snapshot whose every target rendered; the local endpoint serves it, so
files and endpoint always show one revision. ``confirmed_at`` is the last time the store
confirmed that revision is current (a 200 that rendered, or a 304 for it): the data's age is
measured from there, so it grows during an outage or while a new revision fails to render.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from loader.agent.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    revision: int | None
    age_seconds: float | None
    last_error: str | None
    stale: bool


class AgentState:
    def __init__(self, max_stale: float | None = None) -> None:
        self.max_stale = max_stale
        self.rendered: Snapshot | None = None
        self.generation = 0
        self.confirmed_at: float | None = None
        self.last_error: str | None = None
        self._waiters: set[asyncio.Future[bool]] = set()

    def rendered_ok(self, snapshot: Snapshot) -> None:
        changed = self.rendered is None or snapshot.values != self.rendered.values
        self.rendered = snapshot
        self.confirmed_at = time.monotonic()
        self.last_error = None
        if changed:
            self.generation += 1
            waiters, self._waiters = self._waiters, set()
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def confirmed(self, etag: str) -> None:
        if self.rendered is not None and self.rendered.etag == etag:
            self.confirmed_at = time.monotonic()
            self.last_error = None

    def failed(self, message: str) -> None:
        self.last_error = message

    def age(self) -> float | None:
        if self.confirmed_at is None:
            return None
        return time.monotonic() - self.confirmed_at

    def readiness(self) -> Readiness:
        age = self.age()
        stale = self.max_stale is not None and age is not None and age > self.max_stale
        return Readiness(
            ready=self.rendered is not None and not stale,
            revision=self.rendered.revision if self.rendered else None,
            age_seconds=age,
            last_error=self.last_error,
            stale=stale,
        )

    def release(self) -> None:
        """Answer every held long-poll now ("unchanged"): the endpoint is shutting down."""
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(False)

    async def wait_change(self, generation: int, timeout: float) -> bool:
        """Until the served values move past ``generation`` (True) or ``timeout`` (False)."""
        if self.generation != generation:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(fut)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            self._waiters.discard(fut)


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
