"""The database health tracker: one log line per change of state, and writes that failed are
not declared recovered by reads (a full disk still answers reads)."""

from __future__ import annotations

import logging

import pytest

from loader.errors import DatabaseUnavailableError
from loader.store.health import DatabaseHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def err(code: str = "database_unavailable") -> DatabaseUnavailableError:
    return DatabaseUnavailableError("it is down", code)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split(":")[0] for r in caplog.records]


def test_an_outage_is_two_lines_however_many_calls_fail(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = DatabaseHealth(clock)
    with caplog.at_level(logging.INFO, logger="loader.store"):
        for _ in range(1000):
            clock.now += 0.01
            started = clock.now
            health.failed(err())
        assert health.down is not None and health.failed_calls == 1000
        health.ok(started)  # began before the last failure: proves nothing
        assert health.down is not None
        clock.now += 1
        health.ok(clock.now)
        for _ in range(100):
            health.ok(clock.now)
    assert health.down is None
    assert len(caplog.records) == 2
    assert "database unavailable (database_unavailable)" in caplog.records[0].getMessage()
    assert "available again" in caplog.records[1].getMessage()
    assert health.errors == {"database_unavailable": 1000}


def test_a_new_reason_is_a_new_line(caplog: pytest.LogCaptureFixture) -> None:
    health = DatabaseHealth(Clock())
    with caplog.at_level(logging.INFO, logger="loader.store"):
        health.failed(err())
        health.failed(err())
        health.failed(err("database_timeout"))
    assert len(caplog.records) == 2


def test_failed_writes_are_not_cleared_by_reads() -> None:
    clock = Clock()
    health = DatabaseHealth(clock)
    health.failed(err("disk_full"), write=True)
    clock.now += 1
    health.ok(clock.now, write=False)
    assert health.down is not None and health.down.code == "disk_full"
    health.ok(clock.now, write=True)
    assert health.down is None


def test_failing_window() -> None:
    clock = Clock()
    health = DatabaseHealth(clock)
    health.failed(err())
    assert health.failing(10) is not None
    clock.now += 11
    assert health.failing(10) is None
