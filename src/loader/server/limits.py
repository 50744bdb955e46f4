"""Rate limits: token buckets per token (reads, writes and reveals budgeted separately) and per
client address for refused requests.

A request costs one token from its kind's bucket when it arrives, however long it is then held,
so a long-poll watcher costs one request per change (or per ``wait``), not one per second.

Refusals (401) cost their client address one token each; an address with none left is answered
429 before its credential is even looked at, so a flood of bad tokens costs the store neither a
database read nor an audit row per request (the audit log counts them: :mod:`loader.store.audit`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from loader.errors import RateLimitedError
from loader.server.settings import StoreSettings
from loader.store.auth import Principal

K = TypeVar("K")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RATELIMIT_KEY = web.RequestKey("ratelimit", dict)


@dataclass
class Bucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def has_one(self, now: float) -> bool:
        """Whether :meth:`take` would succeed now (takes nothing)."""
        return min(self.burst, self.tokens + (now - self.updated) * self.rate) >= 1.0

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.burst

    def wait_for_one(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def until_full(self) -> float:
        return max(0.0, (self.burst - self.tokens) / self.rate)


def forget_full(buckets: dict[K, Bucket], now: float) -> None:
    """Drop the buckets that have filled up again (an idle client costs no memory)."""
    for key, bucket in list(buckets.items()):
        if bucket.full(now):
            del buckets[key]


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        reveal_rate: float | None = None,
        write_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = {"read": rate, "write": write_rate or rate, "reveal": reveal_rate or rate}
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.clock = clock
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._last_sweep = clock()

    @staticmethod
    def kind(request: web.Request) -> str:
        if request.method in WRITE_METHODS:
            return "write"
        if request.path.endswith("/rendered") and request.query.get("mode") in ("full", "Full"):
            return "reveal"
        return "read"

    def check(self, principal: Principal, route: object, request: web.Request) -> None:
        now = self.clock()
        kind = self.kind(request)
        key = (principal.token_id, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self.rates[kind]
            bucket = self._buckets[key] = Bucket(rate, self.burst, self.burst, now)
        allowed = bucket.take(now)
        headers = {
            "RateLimit-Limit": str(int(self.burst)),
            "RateLimit-Remaining": str(int(bucket.tokens)),
            "RateLimit-Reset": str(math.ceil(bucket.until_full())),
        }
        request[RATELIMIT_KEY] = headers
        self._sweep(now)
        if not allowed:
            wait = bucket.wait_for_one()
            raise RateLimitedError(f"rate limit exceeded for {kind}s; retry later", wait, headers)

    def _sweep(self, now: float) -> None:
        """Forget full buckets now and then so idle tokens cost no memory."""
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        forget_full(self._buckets, now)


class RefusalLimiter:
    """Refused requests per client address: a bucket each, that refusals (not requests) drain.

    A request to an address with an empty bucket is answered 429 before its credential is
    looked at. Requests in flight when the bucket empties may still be refused with 401 (at most
    one per connection, and connections per address are capped); good requests cost nothing
    however many arrive at once."""

    MAX_ADDRESSES = 65536  # past this many draining at once, new addresses share one bucket

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._last_sweep = clock()

    def check(self, client: str | None) -> None:
        """429 for an address out of refusals."""
        bucket = self._buckets.get(client or "")
        if bucket is None and len(self._buckets) >= self.MAX_ADDRESSES:
            bucket = self._buckets.get("*")
        if bucket is not None and not bucket.has_one(self.clock()):
            raise RateLimitedError(
                "too many refused requests from this address; retry later",
                bucket.wait_for_one(),
            )

    def refused(self, client: str | None) -> None:
        """A 401 for ``client``: one from its budget."""
        now = self.clock()
        key = client or ""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._sweep(now)
            if len(self._buckets) >= self.MAX_ADDRESSES:
                key = "*"
                bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = Bucket(self.rate, self.burst, self.burst, now)
        bucket.take(now)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < 10 and len(self._buckets) < self.MAX_ADDRESSES:
            return
        self._last_sweep = now
        forget_full(self._buckets, now)


def limiter_for(settings: StoreSettings) -> RateLimiter | None:
    if settings.rate_limit is None:
        return None
    return RateLimiter(
        settings.rate_limit,
        settings.rate_burst,
        reveal_rate=settings.reveal_rate_limit,
        write_rate=settings.write_rate_limit,
    )
