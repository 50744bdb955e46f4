"""The fleet's pure rules: a consumer's state, a rollout's summary, the restart budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loader.consumer import Report
from loader.store.fleet import Consumer, decide, parse_policy, rollout, slots, state

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def c(kind: str = "runner", **fields: object) -> Consumer:
    return Consumer(1, Report("x", kind, **fields), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("consumer", "newest", "expected"),
    [
        (c("agent", rendered=5), 5, "current"),
        (c("agent", rendered=4), 5, "behind"),
        (c("agent"), 5, "behind"),
        (c(rendered=5, running=4, health="healthy"), 5, "behind"),  # fetched, not restarted
        (c(rendered=5, running=5, health="healthy"), 5, "current"),
        (c(rendered=5, running=4, health="waiting"), 5, "waiting"),
        (c(rendered=5, running=5, health="starting"), 5, "restarting"),
        (c(rendered=5, running=4, health="healthy", failed=5), 5, "failed"),
        (c(rendered=5, running=4, health="healthy", failed=5), 6, "behind"),  # a newer try
        (c("render", rendered=1), 5, "once"),
    ],
)
def test_state(consumer: Consumer, newest: int, expected: str) -> None:
    assert state(consumer, newest) == expected


def test_rollout_summary() -> None:
    members = [
        c("agent", rendered=7),
        c(rendered=7, running=7),
        c(rendered=7, running=5, health="waiting"),
        c("render", rendered=2),
    ]
    summary = rollout(members, 7)
    assert summary.counts["current"] == 2 and summary.counts["waiting"] == 1
    assert summary.counts["once"] == 1
    assert (summary.lag, summary.done, summary.paused) == (2, False, False)
    done = rollout(members[:2], 7)
    assert (done.lag, done.done) == (0, True)
    assert rollout([], 3).done is True
    paused = rollout([c(rendered=7, running=6, failed=7)], 7)
    assert paused.paused is True and paused.done is False


@pytest.mark.parametrize(
    ("text", "stored"), [("3", "3"), (" 10% ", "10%"), ("100%", "100%"), ("007", "7")]
)
def test_policy_parses(text: str, stored: str) -> None:
    assert parse_policy(text) == stored


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "1.5", "ten", "", "%", "12345678"])
def test_bad_policy_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="max_unavailable"):
        parse_policy(text)


@pytest.mark.parametrize(
    ("policy", "live", "expected"),
    [(None, 100, None), ("3", 100, 3), ("10%", 2000, 200), ("10%", 15, 1), ("10%", 0, 1)],
)
def test_slots(policy: str | None, live: int, expected: int | None) -> None:
    assert slots(policy, live) == expected


def test_decide() -> None:
    assert decide("a", "2", 10, [], paused=False).reason == "granted"
    assert decide("a", "2", 10, ["b"], paused=False).in_use == 2
    assert decide("a", "2", 10, ["b", "c"], paused=False).reason == "budget"
    assert decide("b", "2", 10, ["b", "c"], paused=False).reason == "renewed"
    assert decide("b", "2", 10, ["b"], paused=True).reason == "renewed"  # its own restart
    assert decide("a", "2", 10, [], paused=True).reason == "paused"
    unlimited = decide("a", None, 10, ["b"] * 50, paused=False)
    assert unlimited.granted and unlimited.slots is None
