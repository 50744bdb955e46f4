"""The fleet of one environment, as its consumers report it: pure rules, no IO.

* A consumer's **state** (:func:`state`) follows from its report and the environment's newest
  revision: ``current`` (it runs the newest), ``behind``, ``waiting`` (a runner holding a newer
  revision back for a restart slot), ``restarting`` (its new child is not healthy yet),
  ``failed`` (its child did not become healthy at the newest revision: the runner went back to
  the previous one), ``once`` (``render --once``: not part of a rollout).
* A **rollout** (:func:`rollout`) is done when every live consumer but ``once`` is ``current``;
  it is paused while one of them is ``failed``; its lag is the newest revision minus the oldest
  a live consumer runs.
* The **restart budget** (:func:`parse_policy`, :func:`slots`, :func:`decide`): at most
  ``max_unavailable`` runners restart at once -- a count, or a percentage of the live runners
  (rounded down, at least 1). A grant is decided inside one database transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from loader.consumer import Report

STATES = ("current", "behind", "waiting", "restarting", "failed", "once")
MAX_POLICY = 1_000_000


@dataclass(frozen=True, slots=True)
class Consumer:
    """One consumer of one environment as last reported, and when it was last seen."""

    env_id: int
    report: Report
    last_seen: datetime

    @property
    def revision(self) -> int | None:
        """The revision it runs: a supervisor's child's, else the one it rendered."""
        r = self.report
        return r.running if r.running is not None else r.rendered


@dataclass(frozen=True, slots=True)
class LiveConsumer:
    """A live consumer with its environment (for the metrics of every environment)."""

    consumer: Consumer
    app_id: int
    environment: str
    newest: int


def state(consumer: Consumer, newest: int) -> str:
    r = consumer.report
    if r.kind == "render":
        return "once"
    if r.failed is not None and r.failed >= newest:
        return "failed"
    if r.health == "waiting":
        return "waiting"
    if r.health == "starting":
        return "restarting"
    revision = consumer.revision
    return "current" if revision is not None and revision >= newest else "behind"


@dataclass(frozen=True, slots=True)
class Rollout:
    newest: int
    counts: dict[str, int]
    lag: int
    done: bool
    paused: bool


def rollout(consumers: Iterable[Consumer], newest: int) -> Rollout:
    counts = dict.fromkeys(STATES, 0)
    oldest = newest
    for c in consumers:
        s = state(c, newest)
        counts[s] += 1
        if s != "once":
            oldest = min(oldest, c.revision if c.revision is not None else 0)
    others = sum(n for s, n in counts.items() if s not in ("current", "once"))
    return Rollout(newest, counts, newest - oldest, others == 0, counts["failed"] > 0)


# -- the restart budget --------------------------------------------------------------------


def parse_policy(text: str) -> str:
    """A ``max_unavailable`` as stored: ``"3"`` or ``"10%"`` (ValueError, naming the rule)."""
    raw = str(text).strip()
    number = raw.removesuffix("%")
    if not (number.isascii() and number.isdigit()) or len(number) > 7:
        raise ValueError("max_unavailable must be a count (e.g. 3) or a percentage (e.g. 10%)")
    value = int(number)
    if raw.endswith("%") and not 1 <= value <= 100:
        raise ValueError("max_unavailable: a percentage must be from 1% to 100%")
    if not 1 <= value <= MAX_POLICY:
        raise ValueError(f"max_unavailable: a count must be from 1 to {MAX_POLICY}")
    return f"{value}%" if raw.endswith("%") else str(value)


def slots(policy: str | None, live_runners: int) -> int | None:
    """How many runners may restart at once (None: no budget, any number)."""
    if policy is None:
        return None
    if policy.endswith("%"):
        return max(1, live_runners * int(policy[:-1]) // 100)
    return int(policy)


@dataclass(frozen=True, slots=True)
class Slot:
    """A restart slot held by ``consumer_id`` for ``revision`` until ``expires_at`` (a lease)."""

    consumer_id: str
    revision: int
    granted_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    granted: bool
    reason: str  # "granted", "renewed", "budget" (every slot taken), "paused"
    slots: int | None
    in_use: int  # slots held after this decision


def decide(
    consumer_id: str, policy: str | None, live_runners: int, held: Sequence[str], paused: bool
) -> Grant:
    """Whether ``consumer_id`` may restart now; ``held``: the unexpired slots' holders."""
    limit = slots(policy, live_runners)
    if consumer_id in held:
        return Grant(True, "renewed", limit, len(held))
    if paused:
        return Grant(False, "paused", limit, len(held))
    if limit is not None and len(held) >= limit:
        return Grant(False, "budget", limit, len(held))
    return Grant(True, "granted", limit, len(held) + 1)
