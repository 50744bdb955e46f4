"""loader.backoff: the jittered backoff, keep_running and the outage log."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from loader.backoff import Backoff, Deadline, Outage, describe_failure, keep_running
from loader.errors import RateLimitedError, ServiceUnavailableError


def test_backoff_grows_with_jitter_to_the_cap_and_resets() -> None:
    b = Backoff(0.2, 5.0, random.Random(7))
    delays = [b.next() for _ in range(10)]
    bases = [min(5.0, 0.2 * 2**i) for i in range(10)]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.2


def test_backoff_honours_retry_after() -> None:
    b = Backoff(0.05, 0.1, random.Random(1))
    for _ in range(20):
        delay = b.next(retry_after=2.0)
        assert 2.0 <= delay <= 2.2


def test_backoff_is_capped_low_while_nobody_listens_and_keeps_growing_behind() -> None:
    """Refused connections are retried within a second however long the backoff has grown;
    the first other error after them waits the grown step."""
    b = Backoff(5.0, 60.0, random.Random(3))
    for _ in range(8):
        assert 0.5 <= b.next(unreachable=True) <= 1.0
    assert 30.0 <= b.next() <= 60.0
    assert 2.0 <= b.next(retry_after=2.0, unreachable=True) <= 2.2  # the server said when


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ServiceUnavailableError("store x unreachable"), "store x unreachable"),
        (KeyError("s3cret-looking-key"), "KeyError at test_backoff.py:"),
        (ValueError("invalid literal 'hunter2'"), "ValueError at test_backoff.py:"),
    ],
)
def test_describe_failure_never_repeats_a_foreign_message(exc: Exception, text: str) -> None:
    try:
        raise exc
    except Exception as caught:
        described = describe_failure(caught)
    assert described.startswith(text)
    if not isinstance(exc, ServiceUnavailableError):
        assert str(exc.args[0]) not in described


async def test_keep_running_restarts_a_part_that_ends_or_fails_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A part that fails, then returns, then runs: started three times, two errors logged."""
    runs: list[int] = []
    running = asyncio.Event()

    async def part() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise KeyError("x")
        if len(runs) == 2:
            return
        running.set()
        await asyncio.Event().wait()

    log = logging.getLogger("test.keep_running")
    task = asyncio.create_task(keep_running("the part", part, Backoff(0.01, 0.02), log))
    with caplog.at_level(logging.ERROR, logger="test.keep_running"):
        await asyncio.wait_for(running.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == [0, 1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("the part failed (KeyError at test_backoff.py:")
    assert messages[1].startswith("the part stopped; starting it again in")
    assert all(r.levelno == logging.ERROR for r in caplog.records)


def test_outage_logs_each_distinct_error_once_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("test.outage"), "the store")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        outage.recovered()  # nothing to report yet
        for message in ["refused", "refused", "refused", "HTTP 503", "HTTP 503"]:
            outage.failed(message, 1.0)
        outage.recovered()
        outage.recovered()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert warnings[0].startswith("refused; retrying") and warnings[1].startswith("HTTP 503")
    assert warnings[2].startswith("the store: following again after")


def test_deadline_waits_the_backoff_then_gives_up_in_one_line() -> None:
    """``loader run`` and ``render --once`` retry a store that is away for at most --timeout."""
    deadline = Deadline(0.5, Backoff(0.1, 0.2, random.Random(5)))
    waits = []
    with pytest.raises(ServiceUnavailableError) as info:
        for _ in range(100):
            waits.append(deadline.delay(ServiceUnavailableError("store x is unreachable")))
            time.sleep(waits[-1])
    assert waits and all(0.05 <= w <= 0.2 for w in waits)
    assert info.value.message == "gave up after 0.5s: store x is unreachable"


def test_deadline_honours_retry_after_and_gives_up_when_it_ends_too_late() -> None:
    deadline = Deadline(10, Backoff(0.1, 0.2, random.Random(5)))
    assert 3.0 <= deadline.delay(RateLimitedError("slow down", 3.0)) <= 3.3
    with pytest.raises(ServiceUnavailableError, match="gave up after 10s: busy"):
        deadline.delay(ServiceUnavailableError("busy", retry_after=30))
