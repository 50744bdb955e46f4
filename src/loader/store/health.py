"""Is the database answering? One tracker per repository, fed by every database call.

A failed call (unreachable, timed out, disk full, ...) turns the tracker *down*; the first call
that started after the last failure and succeeded turns it *up* again -- a write, if a write
failed (a full disk still answers reads: they must not flip the state back and forth). Each
change is logged once -- one line when the database goes away, one when it is back -- instead of
a traceback per request. The counts feed the store's ``/metrics``; the state feeds
``/v1/ready``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from loader.errors import DatabaseUnavailableError, LoaderError

log = logging.getLogger("loader.store")


class DatabaseHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.down: DatabaseUnavailableError | None = None
        self.down_since = 0.0
        self.last_failure = float("-inf")
        self.failed_calls = 0  # since the last time it was up
        self.writes_failed = False  # this outage includes failed writes
        self.errors: Counter[str] = Counter()  # every failure by code, for the metrics

    def now(self) -> float:
        return self._clock()

    def failed(
        self, error: DatabaseUnavailableError, write: bool = False
    ) -> DatabaseUnavailableError:
        """Record a failure; returns it for ``raise health.failed(...)``."""
        self.errors[error.code] += 1
        self.last_failure = self._clock()
        self.failed_calls += 1
        if self.down is None or self.down.code != error.code:
            if self.down is None:
                self.down_since = self.last_failure
                self.failed_calls = 1
                self.writes_failed = False
            log.error(
                "database unavailable (%s): %s; answering 503 until it recovers",
                error.code,
                error.message,
            )
            self.down = error
        self.writes_failed = self.writes_failed or write
        return error

    def ok(self, started: float, write: bool = False) -> None:
        """A call that began at ``started`` (``now()``) succeeded."""
        if (
            self.down is not None
            and started > self.last_failure
            and (write or not self.writes_failed)
        ):
            log.warning(
                "database available again after %.1f s (%d calls refused meanwhile)",
                self._clock() - self.down_since,
                self.failed_calls,
            )
            self.down = None

    def failing(self, window: float) -> DatabaseUnavailableError | None:
        """The failure, while the tracker is down and the last failure is under ``window`` old."""
        if self.down is not None and self._clock() - self.last_failure < window:
            return self.down
        return None

    def watch(self, classify: Classifier, write: bool = False) -> Watch:
        """``with health.watch(classify): await ...``: one database call, its outcome recorded.
        An exception ``classify`` recognises leaves as a :class:`DatabaseUnavailableError`."""
        return Watch(self, classify, self._clock(), write)


Classifier = Callable[[BaseException], DatabaseUnavailableError | None]


class Watch:
    __slots__ = ("classify", "health", "started", "write")

    def __init__(
        self, health: DatabaseHealth, classify: Classifier, started: float, write: bool
    ) -> None:
        self.health = health
        self.classify = classify
        self.started = started
        self.write = write

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.health.ok(self.started, self.write)
        elif isinstance(exc, DatabaseUnavailableError):
            self.health.failed(exc, self.write)
        elif isinstance(exc, LoaderError):  # a domain answer (not found, conflict): it answered
            self.health.ok(self.started, self.write)
        elif isinstance(exc, Exception):  # (a cancellation says nothing about the database)
            fault = self.classify(exc)
            if fault is not None:  # else not the database's fault: a bug, say
                raise self.health.failed(fault, self.write) from None


@dataclass(frozen=True, slots=True)
class DatabaseTimeouts:
    """How long a call may wait for a connection (or the SQLite writer), and run."""

    acquire: float = 5.0
    statement: float = 5.0
