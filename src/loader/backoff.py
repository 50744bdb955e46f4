"""Retrying without hammering, and never giving up quietly: the one backoff of every follower.

:class:`Backoff` is full-jitter exponential backoff with a cap that honours ``Retry-After``. While
the other side refuses connections (it is down or restarting; a refused connect costs it
nothing) the wait is capped low, at :data:`RECONNECT_CAP`, so a follower is back within about a
second of its return instead of after the next long step.

:func:`keep_running` keeps one long-lived part (a change follower, a file watcher) running: a
part that ends or fails is an error, logged, and started again after the backoff. A part that
had run longer than the cap before it stopped starts again from the first step.

:class:`Outage` logs a follower's trouble once per distinct error (not once per retry) and its
end.

:class:`Deadline` retries a call for at most so long (``loader run`` reading its secrets,
``loader render --once``), waiting the backoff between tries, then gives up with one line.

Light at import time (``random`` and ``time``): ``loader run`` retries through this on its exec
path; ``asyncio`` and ``traceback`` are imported by the functions that need them.
"""

from __future__ import annotations

import random
import time

from loader.errors import (
    LoaderError,
    RateLimitedError,
    ServiceUnavailableError,
    UnreachableError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable
    from typing import NoReturn

RECONNECT_CAP = 1.0


class Backoff:
    """Full-jitter exponential backoff: a random delay in [base/2, base], base doubling to cap."""

    def __init__(
        self,
        initial: float,
        cap: float,
        rng: random.Random | None = None,
        reconnect_cap: float = RECONNECT_CAP,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.reconnect_cap = reconnect_cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def reset(self) -> None:
        self.attempt = 0

    def next(self, retry_after: float | None = None, *, unreachable: bool = False) -> float:
        """The next wait. ``unreachable``: the connection itself failed (capped low)."""
        base = min(self.cap, self.initial * (2**self.attempt))
        if unreachable:
            base = min(base, self.reconnect_cap)
        self.attempt = min(self.attempt + 1, 32)
        delay = self.rng.uniform(base / 2, base)
        if retry_after is not None:
            # The server said when: wait at least that long (a little jitter spreads a herd).
            delay = retry_after + self.rng.uniform(0, min(1.0, retry_after * 0.1))
        return delay


class Deadline:
    """Retry a call until ``timeout`` seconds from now: :meth:`delay` is how long to wait after
    a failure that is worth retrying (the store or agent unreachable, not ready, rate limited),
    or raises "gave up after ..." when that wait would end past the deadline."""

    RETRIED = (ServiceUnavailableError, RateLimitedError)

    def __init__(self, timeout: float, backoff: Backoff) -> None:
        self.timeout = timeout
        self.backoff = backoff
        self.at = time.monotonic() + timeout

    def delay(self, exc: ServiceUnavailableError | RateLimitedError) -> float:
        wait = self.backoff.next(exc.retry_after, unreachable=isinstance(exc, UnreachableError))
        if time.monotonic() + wait > self.at:
            raise ServiceUnavailableError(f"gave up after {self.timeout:g}s: {exc}") from None
        return wait


def describe_failure(exc: BaseException) -> str:
    """A one-line account of an unexpected exception that cannot carry a value: a loader error's
    own message (they never hold one), otherwise only the type and where it was raised."""
    import traceback

    if isinstance(exc, LoaderError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


async def keep_running(
    name: str,
    part: Callable[[], Awaitable[object]],
    backoff: Backoff,
    log: logging.Logger,
) -> NoReturn:
    """Run ``part`` until cancelled, starting it again (after ``backoff``) whenever it ends."""
    import asyncio

    while True:
        started = time.monotonic()
        try:
            await part()
        except Exception as exc:
            problem = f"failed ({describe_failure(exc)})"
        else:
            problem = "stopped"
        if time.monotonic() - started > backoff.cap:
            backoff.reset()
        delay = backoff.next()
        log.error("%s %s; starting it again in %.1fs", name, problem, delay)
        await asyncio.sleep(delay)


class Outage:
    """Log trouble reaching ``what`` once per distinct error, and say when it is over."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.since: float | None = None
        self.last: str | None = None

    def failed(self, message: str, delay: float) -> None:
        if self.since is None:
            self.since = time.monotonic()
        if message != self.last:
            self.last = message
            self.log.warning("%s; retrying (first retry in %.1fs)", message, delay)
        else:
            self.log.debug("%s; retrying in %.1fs", message, delay)

    def recovered(self) -> None:
        if self.since is not None:
            elapsed = time.monotonic() - self.since
            self.log.warning("%s: following again after %.1fs of errors", self.what, elapsed)
        self.since = None
        self.last = None
