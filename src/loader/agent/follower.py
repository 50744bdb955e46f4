"""Follow the store: long-poll with the last ETag, so a change arrives as it is committed.

On errors: jittered exponential backoff with a cap, ``Retry-After`` honoured for 429 and 503, a
refused token re-read from its file. A token file change interrupts the current request and
retries at once with the new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loader.agent.metrics import AgentMetrics
from loader.agent.snapshot import Snapshot
from loader.agent.state import AgentState
from loader.agent.storeclient import StoreClient
from loader.agent.tokens import TokenSource
from loader.errors import (
    InsufficientScopeError,
    LoaderError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
)

log = logging.getLogger("loader.agent")
T = TypeVar("T")


class Backoff:
    """Full-jitter exponential backoff: a random delay in [base/2, base], base doubling to cap."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def reset(self) -> None:
        self.attempt = 0

    def next(self, retry_after: float | None = None) -> float:
        base = min(self.cap, self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        delay = self.rng.uniform(base / 2, base)
        if retry_after is not None:
            # The server said when: wait at least that long (a little jitter spreads a herd).
            delay = retry_after + self.rng.uniform(0, min(1.0, retry_after * 0.1))
        return delay


class Follower:
    def __init__(
        self,
        client: StoreClient,
        tokens: TokenSource,
        state: AgentState,
        metrics: AgentMetrics,
        on_snapshot: Callable[[Snapshot], Awaitable[None]],
        *,
        wait: float,
        backoff: Backoff,
    ) -> None:
        self.client = client
        self.tokens = tokens
        self.state = state
        self.metrics = metrics
        self.on_snapshot = on_snapshot
        self.wait = wait
        self.backoff = backoff
        self.etag: str | None = None
        self.requests = 0

    async def fetch_once(self) -> Snapshot | None:
        """One request (with the long-poll hold when an ETag is known)."""
        self.requests += 1
        started = time.perf_counter()
        try:
            snapshot = await self.client.fetch(self.tokens.token, self.etag, self.wait)
        except LoaderError:
            self.metrics.fetch_seconds.labels("error").observe(time.perf_counter() - started)
            raise
        self.metrics.fetch_seconds.labels("200" if snapshot else "304").observe(
            time.perf_counter() - started
        )
        return snapshot

    async def step(self) -> float:
        """Fetch and apply once; returns how long to sleep before the next step."""
        try:
            snapshot = await self._interruptible(self.fetch_once())
        except _TokenChanged:
            return 0.0
        except (UnauthorizedError, InsufficientScopeError) as exc:
            self._failed("token", exc)
            self.tokens.reload()
            return self.backoff.next()
        except (RateLimitedError, ServiceUnavailableError) as exc:
            self._failed("store", exc)
            return self.backoff.next(exc.retry_after)
        except LoaderError as exc:
            self._failed("store", exc)
            return self.backoff.next()
        self.backoff.reset()
        if snapshot is None:
            if self.etag is not None:
                self.state.confirmed(self.etag)
            return 0.0
        self.etag = snapshot.etag
        await self.on_snapshot(snapshot)
        return 0.0

    async def run(self) -> None:
        while True:
            delay = await self.step()
            if delay > 0:
                log.info("retrying in %.1fs", delay)
                with contextlib.suppress(_TokenChanged):
                    await self._interruptible(asyncio.sleep(delay))

    def _failed(self, kind: str, exc: LoaderError) -> None:
        self.metrics.errors.labels(kind).inc()
        self.state.failed(str(exc))
        log.warning("%s", exc)

    async def _interruptible(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` unless the token changes first (then raise _TokenChanged)."""
        self.tokens.changed.clear()
        task = asyncio.ensure_future(coro)
        changed = asyncio.ensure_future(self.tokens.changed.wait())
        try:
            done, _ = await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            changed.cancel()
        if task in done:
            return task.result()
        task.cancel()
        raise _TokenChanged


class _TokenChanged(Exception):
    pass
