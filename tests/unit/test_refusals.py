"""The refusal tally: refusals that agree share a record and a count; distinct records are
bounded, the overflow shares one record per outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loader.store.models import AuditEvent
from loader.store.refusals import RefusalTally

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def refusal(n: int = 0, client: str = "10.0.0.1", app: int | None = 1, **kw: object) -> AuditEvent:
    return AuditEvent(
        at=T0 + timedelta(seconds=n),
        action=str(kw.get("action", "listSecrets")),
        outcome=str(kw.get("outcome", "unauthorized")),
        app_id=app,
        client=client,
    )


def test_alike_refusals_share_one_record_that_keeps_the_first_time() -> None:
    tally = RefusalTally()
    for n in range(100):
        tally.add(refusal(n))
    tally.add(refusal(200, client="10.0.0.2"))
    tally.add(refusal(300, outcome="forbidden"))
    records = sorted(tally.drain(), key=lambda e: (e.client or "", e.outcome))
    assert [(e.client, e.outcome, e.count, e.at) for e in records] == [
        ("10.0.0.1", "forbidden", 1, T0 + timedelta(seconds=300)),
        ("10.0.0.1", "unauthorized", 100, T0),
        ("10.0.0.2", "unauthorized", 1, T0 + timedelta(seconds=200)),
    ]
    assert tally.drain() == [] and len(tally) == 0


def test_distinct_records_are_bounded_and_nothing_is_lost() -> None:
    tally = RefusalTally(max_records=10)
    for n in range(1000):  # a different app in every path
        tally.add(refusal(n, app=n))
    records = tally.drain()
    assert len(records) == 11
    assert sum(e.count for e in records) == 1000
    (overflow,) = [e for e in records if e.action == "refused"]
    assert (overflow.client, overflow.app_id, overflow.count) == (None, None, 990)
