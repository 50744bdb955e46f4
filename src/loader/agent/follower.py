"""Follow the store: long-poll with the last ETag, so a change arrives as it is committed.

On errors: jittered exponential backoff with a cap, ``Retry-After`` honoured for 429 and 503, a
refused token re-read from its file, and a store that refuses connections (down, restarting)
retried at least every second, so the agent is back within about a second of its return. The
first request after an error does not wait: its answer (a 304 counts) tells ``/readyz`` at once
that the data is current again. A token file change interrupts the current request and retries
at once with the new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loader.agent.metrics import AgentMetrics
from loader.agent.presented import AgentState
from loader.agent.snapshot import Snapshot
from loader.agent.storeclient import StoreClient
from loader.agent.tokens import ExchangedTokens, TokenSource
from loader.backoff import Backoff, Outage
from loader.errors import (
    InsufficientScopeError,
    LoaderError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnreachableError,
)

log = logging.getLogger("loader.agent")
T = TypeVar("T")


class Follower:
    def __init__(
        self,
        client: StoreClient,
        tokens: TokenSource | ExchangedTokens,
        state: AgentState,
        metrics: AgentMetrics,
        on_snapshot: Callable[[Snapshot], Awaitable[None]],
        *,
        wait: float,
        backoff: Backoff,
    ) -> None:
        self.client, self.tokens, self.on_snapshot = client, tokens, on_snapshot
        self.state, self.metrics = state, metrics
        self.wait, self.backoff = wait, backoff
        self.etag: str | None = None
        self.recovering = False  # the last request failed: the next one does not wait
        self.outage = Outage(log, f"store {client.base}")

    async def fetch_once(self) -> Snapshot | None:
        """One request (with the long-poll hold when an ETag is known)."""
        started = time.perf_counter()
        try:
            token = await self.tokens.current()
            # Never held past the token's renewal: the next request trades for a new one.
            wait = 0.0 if self.recovering else min(self.wait, self.tokens.valid_for())
            snapshot = await self.client.fetch(token, self.etag, wait)
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
            self.tokens.reload()
            return self._failed("token", exc, self.backoff.next())
        except UnreachableError as exc:
            return self._failed("store", exc, self.backoff.next(unreachable=True))
        except (RateLimitedError, ServiceUnavailableError) as exc:
            return self._failed("store", exc, self.backoff.next(exc.retry_after))
        except LoaderError as exc:
            return self._failed("store", exc, self.backoff.next())
        self.backoff.reset()
        self.recovering = False
        self.outage.recovered()
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
                with contextlib.suppress(_TokenChanged):
                    await self._interruptible(asyncio.sleep(delay))

    def _failed(self, kind: str, exc: LoaderError, delay: float) -> float:
        self.metrics.errors.labels(kind).inc()
        self.state.failed(str(exc))
        self.recovering = True
        self.outage.failed(str(exc), delay)
        return delay

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
