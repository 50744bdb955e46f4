"""The change notifier (loader.store.notifier) as tables of events: who wakes, with what, and
what is left parked -- over many successive changes, not only the first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loader.store.notifier import ChangeNotifier

# Each case: the revision a waiter knows, the events that happen while it waits, and what its
# wait answers (True: changed, False: timed out or released).
# Events: ("publish", env, revision) | ("interrupt", holder) | ("close",)
CASES = [
    ("a newer revision wakes", 3, [("publish", 1, 4)], True),
    ("a jump of several revisions wakes", 3, [("publish", 1, 9)], True),
    ("the same revision again does not", 3, [("publish", 1, 3)], False),
    ("an older revision does not", 3, [("publish", 1, 2)], False),
    ("another environment does not", 3, [("publish", 2, 4)], False),
    ("a stale then a new one wakes", 3, [("publish", 1, 2), ("publish", 1, 4)], True),
    ("its holder's interrupt wakes", 3, [("interrupt", "lt_me")], True),
    ("another holder's interrupt does not", 3, [("interrupt", "lt_other")], False),
    ("close releases as unchanged", 3, [("close",)], False),
]


def apply(notifier: ChangeNotifier, event: tuple[Any, ...]) -> None:
    if event[0] == "publish":
        notifier.publish(event[1], event[2])
    elif event[0] == "interrupt":
        notifier.interrupt(event[1])
    else:
        notifier.close()


@pytest.mark.parametrize(("case", "known", "events", "changed"), CASES, ids=[c[0] for c in CASES])
async def test_a_waiter_wakes_on_news_only(
    case: str, known: int, events: list[tuple[Any, ...]], changed: bool
) -> None:
    notifier = ChangeNotifier()
    notifier.publish(1, known)
    waiter = asyncio.ensure_future(notifier.wait(1, known, 0.3, holder="lt_me"))
    await asyncio.sleep(0)
    assert notifier.waiting() == 1 and notifier.holding("lt_me") == 1
    for event in events:
        apply(notifier, event)
    assert await waiter is changed
    assert notifier.waiting() == 0 and notifier.holding("lt_me") == 0  # nothing left parked


async def test_a_revision_already_past_answers_at_once() -> None:
    notifier = ChangeNotifier()
    notifier.publish(1, 5)
    assert await notifier.wait(1, 4, 10) is True
    assert notifier.waiting() == 0


async def test_after_close_nothing_is_held() -> None:
    notifier = ChangeNotifier()
    notifier.close()
    assert await notifier.wait(1, 0, 10) is False


async def test_a_hundred_successive_changes_each_wake_their_watchers() -> None:
    """Every change is acted on, the hundredth as the first; thousands wake in one pass."""
    notifier = ChangeNotifier()
    for revision in range(100):
        watchers = [asyncio.ensure_future(notifier.wait(1, revision, 5)) for _ in range(50)]
        await asyncio.sleep(0)
        notifier.publish(1, revision + 1)
        assert await asyncio.gather(*watchers) == [True] * 50
        assert notifier.latest(1) == revision + 1
    assert notifier.waiting() == 0 and notifier.watched() == []


async def test_interrupt_wakes_every_waiter_of_one_holder_only() -> None:
    notifier = ChangeNotifier()
    mine = [asyncio.ensure_future(notifier.wait(env, 0, 5, holder="lt_a")) for env in (1, 2, 3)]
    other = asyncio.ensure_future(notifier.wait(1, 0, 0.2, holder="lt_b"))
    await asyncio.sleep(0)
    assert (notifier.holding("lt_a"), notifier.holding("lt_b")) == (3, 1)
    assert notifier.interrupt("lt_a") == 3
    assert await asyncio.gather(*mine) == [True, True, True]
    assert await other is False
    assert notifier.interrupt("lt_a") == 0


async def test_prepare_runs_once_before_the_waiters_wake() -> None:
    """The store decrypts a new revision once; its woken watchers then find it ready."""
    order: list[str] = []

    async def prepare(context: Any, revision: int) -> None:
        order.append(f"prepare {context} r{revision}")
        await asyncio.sleep(0.01)

    notifier = ChangeNotifier(prepare=prepare)
    watchers = [asyncio.ensure_future(notifier.wait(1, 0, 5, context="env1")) for _ in range(10)]
    await asyncio.sleep(0)
    notifier.publish(1, 1)

    async def woken(fut: asyncio.Future[bool]) -> None:
        await fut
        order.append("woken")

    await asyncio.gather(*(woken(w) for w in watchers))
    assert order == ["prepare env1 r1"] + ["woken"] * 10


async def test_a_failing_prepare_still_wakes_the_waiters() -> None:
    async def prepare(context: Any, revision: int) -> None:
        raise RuntimeError("the database is away")

    notifier = ChangeNotifier(prepare=prepare)
    watcher = asyncio.ensure_future(notifier.wait(1, 0, 5, context="env1"))
    await asyncio.sleep(0)
    notifier.publish(1, 1)
    assert await watcher is True  # it meets (and reports) the error itself


async def test_timeouts_expire_as_unchanged() -> None:
    notifier = ChangeNotifier()
    waits = asyncio.gather(*(notifier.wait(env, 0, 0.15) for env in range(200)))
    assert await asyncio.wait_for(waits, 30) == [False] * 200  # (30 s: only against a hang)
    assert notifier.waiting() == 0 and notifier.watched() == []
