"""The fleet routes on both backends: consumers report on their runtime reads, the store lists
them, ages them out, keeps a restart budget that concurrent runners never exceed, and pauses a
rollout when a runner's child fails."""

from __future__ import annotations

import asyncio
from typing import Any

from loader.consumer import HEADER, Report
from tests.store_harness import Store

ENV = "/v1/apps/{app}/environments/default"


def _report(cid: str, kind: str = "runner", **fields: Any) -> dict[str, str]:
    return {HEADER: Report(cid, kind, "host-1", "0.1.0", **fields).header()}


async def _json(store: Store, method: str, path: str, body: Any = None, **headers: str) -> Any:
    resp = await store.client.request(
        method, path, json=body, headers={**store.auth(store.admin), **headers}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _read(store: Store, app: int, report: dict[str, str], token: str | None = None) -> None:
    resp = await store.client.get(
        ENV.format(app=app) + "/rendered?mode=full",
        headers={**store.auth(token or store.admin), **report},
    )
    assert resp.status == 200, await resp.text()


async def _fleet(store: Store, app: int) -> dict[str, Any]:
    result: dict[str, Any] = await _json(store, "GET", ENV.format(app=app) + "/consumers")
    return result


async def test_consumers_report_on_their_reads_and_show_with_their_state(store: Store) -> None:
    """1. An agent, a runner and a render --once read revision 1: each is listed with what it
    reported; 2. revision 2: all are behind (render is "once": not part of the rollout);
    3. the agent renders 2, the runner starts its child on 2: done, lag 0."""
    app = await store.app()
    await store.put(app, "A", "1")
    await _read(store, app, _report("agent-1", "agent", rendered=1))
    await _read(store, app, _report("runner-1", rendered=1, running=1, health="healthy"))
    await _read(store, app, _report("once-1", "render"))
    fleet = await _fleet(store, app)
    by_id = {c["id"]: c for c in fleet["consumers"]}
    assert sorted(by_id) == ["agent-1", "once-1", "runner-1"]
    assert by_id["once-1"]["rendered_revision"] == 1 and by_id["once-1"]["state"] == "once"
    assert by_id["runner-1"]["running_revision"] == 1 and by_id["runner-1"]["host"] == "host-1"
    assert fleet["rollout"]["done"] is True and fleet["rollout"]["lag"] == 0

    await store.put(app, "A", "2")
    fleet = await _fleet(store, app)
    assert fleet["revision"] == 2
    assert {c["id"]: c["state"] for c in fleet["consumers"]} == {
        "agent-1": "behind",
        "runner-1": "behind",
        "once-1": "once",
    }
    assert fleet["rollout"]["done"] is False and fleet["rollout"]["lag"] == 1
    assert fleet["rollout"]["counts"]["behind"] == 2

    await _read(store, app, _report("agent-1", "agent", rendered=2, seq=1))
    await _read(store, app, _report("runner-1", rendered=2, running=2, health="healthy", seq=1))
    fleet = await _fleet(store, app)
    assert fleet["rollout"]["done"] is True
    assert fleet["rollout"]["counts"]["current"] == 2


async def test_a_late_report_does_not_overwrite_a_newer_one(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "1")
    await _read(store, app, _report("r", rendered=1, running=1, health="healthy", seq=5))
    await _read(store, app, _report("r", rendered=0, running=0, health="starting", seq=4))
    assert store.state.consumers is not None
    await store.state.consumers.flush()
    (only,) = (await _fleet(store, app))["consumers"]
    assert only["running_revision"] == 1 and only["state"] == "current"


async def test_reports_are_written_in_batches_and_a_quiet_long_poll_costs_no_write(
    store: Store,
) -> None:
    """Ten consumers report three times each with nothing new: one batch of ten rows; a
    change is written with the next batch."""
    app = await store.app()
    await store.put(app, "A", "1")
    consumers = store.state.consumers
    assert consumers is not None
    await consumers.flush()
    before_rows, before_batches = consumers.rows_written, consumers.batches
    for _ in range(3):
        for i in range(10):
            await _read(store, app, _report(f"c{i}", "agent", rendered=1))
        await consumers.flush()
    assert consumers.rows_written - before_rows == 10
    assert consumers.batches - before_batches == 1
    await _read(store, app, _report("c0", "agent", rendered=1, seq=1))
    await consumers.flush()
    assert consumers.rows_written - before_rows == 11
    # What the database holds is what a listing shows (another replica reads only the rows).
    rows = await store.state.service.repo.list_consumers(1, consumers.live_since())
    assert len(rows) == 10


async def test_consumers_not_seen_for_the_ttl_age_out(make_store: Any) -> None:
    async with make_store(consumer_ttl=10, consumer_flush_interval=0.05) as store:
        app = await store.app()
        await store.put(app, "A", "1")
        await _read(store, app, _report("old", "agent", rendered=1))
        await _read(store, app, _report("new", "agent", rendered=1))
        await store.state.consumers.flush()
        # "old" was last seen 11 seconds ago (its row rewritten as a stalled consumer's is).
        await store.sql(
            "UPDATE consumers SET last_seen = "
            + (
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-11 seconds')"
                if store.backend == "sqlite"
                else "now() - interval '11 seconds'"
            )
            + " WHERE consumer_id = 'old'"
        )
        fleet = await _fleet(store, app)
        assert [c["id"] for c in fleet["consumers"]] == ["new"]


async def test_bad_reports_are_refused_and_change_nothing(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "1")
    for bad in (
        "kind=runner",
        "id=x;kind=robot",
        "id=x;kind=runner;rendered=-1",
        "id=x;kind=runner;host=a b",
        "id=x;kind=runner;secret=1",
        "id=" + "x" * 600,
    ):
        resp = await store.client.get(
            ENV.format(app=app) + "/rendered?mode=full",
            headers={**store.auth(store.admin), HEADER: bad},
        )
        assert resp.status == 400, bad
        assert HEADER in (await resp.json())["error"]
    assert (await _fleet(store, app))["consumers"] == []


async def test_fleet_routes_check_scope_and_binding(store: Store) -> None:
    app = await store.app()
    other = await store.app("other")
    path = ENV.format(app=app)
    reader = await store.token("apps:read", app=app)
    runtime = await store.token("secrets:reveal", app=other)
    for token, method, route, status in (
        (reader, "GET", "/consumers", 200),
        (reader, "PUT", "/rollout", 403),
        (runtime, "GET", "/consumers", 403),
        (runtime, "POST", "/restarts", 403),  # bound to another app
    ):
        body = {"max_unavailable": 1} if method == "PUT" else {"revision": 1}
        resp = await store.client.request(
            method,
            path + route,
            json=body if method != "GET" else None,
            headers={**store.auth(token), **_report("r")},
        )
        assert resp.status == status, (method, route, await resp.text())


async def test_policy_is_set_checked_and_cleared(store: Store) -> None:
    app = await store.app()
    path = ENV.format(app=app) + "/rollout"
    assert (await _json(store, "GET", path))["max_unavailable"] is None
    assert (await _json(store, "PUT", path, {"max_unavailable": "10%"}))["max_unavailable"] == "10%"
    assert (await _json(store, "PUT", path, {"max_unavailable": 3}))["slots"] == 3
    for bad in ("0", "101%", "ten", "-1", 0, "1.5"):
        resp = await store.client.put(
            path, json={"max_unavailable": bad}, headers=store.auth(store.admin)
        )
        assert resp.status == 400, bad
    assert (await _json(store, "GET", path))["max_unavailable"] == "3"
    assert (await _json(store, "PUT", path, {"max_unavailable": None}))["max_unavailable"] is None


async def _acquire(store: Store, app: int, cid: str, revision: int, **fields: Any) -> Any:
    return await _json(
        store,
        "POST",
        ENV.format(app=app) + "/restarts",
        {"revision": revision},
        **_report(cid, **fields),
    )


async def _release(store: Store, app: int, cid: str, **fields: Any) -> Any:
    return await _json(store, "DELETE", ENV.format(app=app) + "/restarts", **_report(cid, **fields))


async def test_budget_is_never_exceeded_under_concurrent_requests(store: Store) -> None:
    """40 runners at revision 1 with max-unavailable 10% (4 slots); revision 2; all 40 ask at
    once, in waves: each wave grants at most 4, a release frees one, renewal keeps one."""
    app = await store.app()
    await store.put(app, "A", "1")
    ids = [f"r{i:02d}" for i in range(40)]
    for cid in ids:
        await _read(store, app, _report(cid, rendered=1, running=1, health="healthy"))
    await _json(store, "PUT", ENV.format(app=app) + "/rollout", {"max_unavailable": "10%"})
    assert store.state.consumers is not None
    await store.state.consumers.flush()  # (the batch writer's next round: every runner known)
    await store.put(app, "A", "2")
    pending, waves, seq = list(ids), 0, 1
    while pending:
        waves += 1
        seq += 1
        answers = await asyncio.gather(
            *(
                _acquire(store, app, cid, 2, rendered=2, health="waiting", seq=seq)
                for cid in pending
            )
        )
        granted = [cid for cid, a in zip(pending, answers, strict=True) if a["granted"]]
        assert 1 <= len(granted) <= 4, answers
        assert all(a["in_use"] <= 4 and a["slots"] == 4 for a in answers)
        renewed = await _acquire(store, app, granted[0], 2, rendered=2, health="starting", seq=seq)
        assert renewed["granted"] and renewed["reason"] == "renewed"
        fleet = await _fleet(store, app)
        assert fleet["rollout"]["in_use"] == len(granted)
        for cid in granted:
            released = await _release(
                store, app, cid, rendered=2, running=2, health="healthy", seq=seq + 1
            )
            assert released == {"released": True}
        pending = [cid for cid in pending if cid not in granted]
    assert waves >= 10
    fleet = await _fleet(store, app)
    assert fleet["rollout"]["done"] is True and fleet["rollout"]["in_use"] == 0


async def test_a_failed_child_pauses_the_rollout_until_a_newer_revision(store: Store) -> None:
    """1. r1 takes a slot and reports failed at 2 (it went back to 1): paused, nobody else
    gets a slot, the state shows; 2. revision 3 (the fix): slots again."""
    app = await store.app()
    await store.put(app, "A", "1")
    for cid in ("r1", "r2", "r3"):
        await _read(store, app, _report(cid, rendered=1, running=1, health="healthy"))
    await _json(store, "PUT", ENV.format(app=app) + "/rollout", {"max_unavailable": 2})
    await store.put(app, "A", "2")
    assert (await _acquire(store, app, "r1", 2, rendered=2, health="waiting", seq=1))["granted"]
    await _release(store, app, "r1", rendered=2, running=1, health="failed", failed=2, seq=2)
    refused = await _acquire(store, app, "r2", 2, rendered=2, health="waiting", seq=1)
    assert refused == {
        "granted": False,
        "reason": "paused",
        "slots": 2,
        "in_use": 0,
        "lease_seconds": refused["lease_seconds"],
    }
    fleet = await _fleet(store, app)
    assert fleet["rollout"]["paused"] is True and fleet["rollout"]["done"] is False
    states = {c["id"]: c["state"] for c in fleet["consumers"]}
    assert states == {"r1": "failed", "r2": "waiting", "r3": "behind"}

    await store.put(app, "A", "3")
    assert (await _acquire(store, app, "r2", 3, rendered=3, health="waiting", seq=2))["granted"]


async def test_an_expired_lease_frees_its_slot(make_store: Any) -> None:
    async with make_store(restart_lease=5) as store:
        app = await store.app()
        await store.put(app, "A", "1")
        await _json(store, "PUT", ENV.format(app=app) + "/rollout", {"max_unavailable": 1})
        assert (await _acquire(store, app, "dead", 1))["granted"]
        assert (await _acquire(store, app, "next", 1))["reason"] == "budget"
        await store.sql(
            "UPDATE restart_slots SET expires_at = "
            + (
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 seconds')"
                if store.backend == "sqlite"
                else "now() - interval '1 second'"
            )
        )
        assert (await _acquire(store, app, "next", 1))["granted"]


async def test_restart_routes_need_a_runner_report(store: Store) -> None:
    app = await store.app()
    path = ENV.format(app=app) + "/restarts"
    for headers in ({}, _report("a", "agent")):
        resp = await store.client.post(
            path, json={"revision": 1}, headers={**store.auth(store.admin), **headers}
        )
        assert resp.status == 400


async def test_metrics_show_consumers_per_state_and_the_lag(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "1")
    await _read(store, app, _report("a", "agent", rendered=1))
    await _read(store, app, _report("r", rendered=1, running=1, health="healthy"))
    await store.put(app, "A", "2")
    await store.put(app, "A", "3")
    await _read(store, app, _report("a", "agent", rendered=3, seq=1))
    assert store.state.consumers is not None
    await store.state.consumers.flush()
    resp = await store.client.get("/metrics")
    text = await resp.text()
    labels = f'app="{app}",environment="default"'
    assert f'loader_store_consumers{{{labels},state="current"}} 1.0' in text
    assert f'loader_store_consumers{{{labels},state="behind"}} 1.0' in text
    assert f"loader_store_rollout_lag_revisions{{{labels}}} 2.0" in text
    assert "loader_store_consumer_rows_written_total 2.0" in text
