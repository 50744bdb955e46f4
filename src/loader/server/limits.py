"""Per-token rate limits: token buckets, with reads, writes and reveals budgeted separately.

A request costs one token from its kind's bucket when it arrives, however long it is then held,
so a long-poll watcher costs one request per change (or per ``wait``), not one per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from loader.errors import RateLimitedError
from loader.server.settings import StoreSettings
from loader.store.auth import Principal

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

    def wait_for_one(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def until_full(self) -> float:
        return max(0.0, (self.burst - self.tokens) / self.rate)


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
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * bucket.rate >= bucket.burst:
                del self._buckets[key]


def limiter_for(settings: StoreSettings) -> RateLimiter | None:
    if settings.rate_limit is None:
        return None
    return RateLimiter(
        settings.rate_limit,
        settings.rate_burst,
        reveal_rate=settings.reveal_rate_limit,
        write_rate=settings.write_rate_limit,
    )
