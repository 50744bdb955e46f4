"""Environment routes: declare-only secrets, PUT value, description, pagination, versions,
compare-and-set, rollback; and the runtime route: modes, names, formats, ETag, long-poll."""

from __future__ import annotations

import asyncio

from tests.store_harness import Store

MASK = "**********"


def path(app: int, env: str = "default", rest: str = "") -> str:
    return f"/v1/apps/{app}/environments/{env}/secrets{rest}"


async def test_declare_then_set_value(store: Store) -> None:
    app = await store.app()
    h = store.auth(store.admin)
    declared = await (
        await store.client.post(
            path(app), json={"name": "DECLARED", "description": "set me later"}, headers=h
        )
    ).json()
    assert declared["has_value"] is False and declared["version"] == 0
    assert declared["description"] == "set me later" and declared["value"] == MASK
    rendered = await (
        await store.client.get(f"/v1/apps/{app}/environments/default/rendered?mode=full", headers=h)
    ).json()
    assert rendered["secrets"] == {} and rendered["unset"] == ["DECLARED"]
    missing = await store.client.put(path(app, rest="/NOPE/value"), json={"value": "v"}, headers=h)
    assert missing.status == 404
    set_ = await (
        await store.client.put(
            path(app, rest="/DECLARED/value"), json={"value": "now-set"}, headers=h
        )
    ).json()
    assert set_["has_value"] is True and set_["version"] == 1
    assert set_["description"] == "set me later"
    assert await store.reveal(app) == {"DECLARED": "now-set"}
    # Declaring again (no value) keeps the value.
    await store.client.post(path(app), json={"name": "DECLARED"}, headers=h)
    assert await store.reveal(app) == {"DECLARED": "now-set"}


async def test_description_patch_does_not_touch_value(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "v")
    h = store.auth(store.admin)
    patched = await (
        await store.client.patch(path(app, rest="/A"), json={"description": "the A"}, headers=h)
    ).json()
    assert patched["description"] == "the A" and patched["version"] == 1
    cleared = await (
        await store.client.patch(path(app, rest="/A"), json={"description": None}, headers=h)
    ).json()
    assert cleared["description"] is None
    assert await store.reveal(app) == {"A": "v"}


async def test_pagination_totals(store: Store) -> None:
    app = await store.app()
    for i in range(7):
        await store.put(app, f"S{i}", str(i))
    h = store.auth(store.admin)
    pages = []
    for page in (1, 2, 3, 4):
        body = await (
            await store.client.get(path(app) + f"?page={page}&page_size=3", headers=h)
        ).json()
        assert body["total"] == 7 and body["total_pages"] == 3 and body["page_size"] == 3
        pages.append([s["name"] for s in body["secrets"]])
    assert pages == [["S0", "S1", "S2"], ["S3", "S4", "S5"], ["S6"], []]


async def test_versions_and_rollback(store: Store) -> None:
    app = await store.app()
    h = store.auth(store.admin)
    for value in ("one", "two", "three"):
        await store.put(app, "A", value)
    versions = await (await store.client.get(path(app, rest="/A/versions"), headers=h)).json()
    assert [v["version"] for v in versions["versions"]] == [3, 2, 1]
    assert all(set(v) >= {"version", "created_at", "actor"} for v in versions["versions"])
    assert "one" not in str(versions)
    rolled = await (
        await store.client.post(path(app, rest="/A/rollback"), json={"version": 1}, headers=h)
    ).json()
    assert rolled["version"] == 4
    assert await store.reveal(app) == {"A": "one"}
    gone = await store.client.post(path(app, rest="/A/rollback"), json={"version": 99}, headers=h)
    assert gone.status == 404


async def test_old_versions_lose_their_value_past_max_versions(store: Store) -> None:
    app = await store.app()
    h = store.auth(store.admin)
    store.state.service.max_versions = 3
    for i in range(5):
        await store.put(app, "A", f"v{i}")
    versions = (await (await store.client.get(path(app, rest="/A/versions"), headers=h)).json())[
        "versions"
    ]
    assert [(v["version"], v["has_value"]) for v in versions] == [
        (5, True),
        (4, True),
        (3, True),
        (2, False),
        (1, False),
    ]
    pruned = await store.client.post(path(app, rest="/A/rollback"), json={"version": 1}, headers=h)
    assert pruned.status == 404


async def test_if_match_compare_and_set(store: Store) -> None:
    app = await store.app()
    h = store.auth(store.admin)
    first = await store.put(app, "A", "one")
    etag = first["etag"]
    stale_then = etag
    second = await (
        await store.client.post(
            path(app), json={"name": "A", "value": "two"}, headers={**h, "If-Match": etag}
        )
    ).json()
    assert second["etag"] != etag
    for method, rest, body in (
        ("POST", "", {"name": "A", "value": "three"}),
        ("PUT", "/A/value", {"value": "three"}),
        ("PATCH", "/A", {"description": "x"}),
        ("DELETE", "/A", None),
        ("POST", "/A/rollback", {"version": 1}),
    ):
        resp = await store.client.request(
            method, path(app, rest=rest), json=body, headers={**h, "If-Match": stale_then}
        )
        assert resp.status == 412, (method, rest)
        assert (await resp.json())["code"] == "precondition_failed"
    assert await store.reveal(app) == {"A": "two"}
    ok = await store.client.delete(path(app, rest="/A"), headers={**h, "If-Match": second["etag"]})
    assert ok.status == 204
    created = await store.client.post(
        path(app), json={"name": "A", "value": "x"}, headers={**h, "If-Match": "*"}
    )
    assert created.status == 412  # If-Match on a secret that does not exist


async def test_concurrent_writers_last_write_wins_and_revisions_increase(store: Store) -> None:
    app = await store.app()
    start = await store.revision(app)
    results = await asyncio.gather(*(store.put(app, "A", f"w{i}") for i in range(16)))
    versions = sorted(r["version"] for r in results)
    assert versions == list(range(1, 17))
    assert await store.revision(app) == start + 16
    last = max(results, key=lambda r: r["version"])
    value = (await store.reveal(app))["A"]
    assert value == f"w{next(i for i, r in enumerate(results) if r is last)}"


# -- the runtime route ---------------------------------------------------------------------


def rendered(app: int, query: str = "mode=full", env: str = "default") -> str:
    return f"/v1/apps/{app}/environments/{env}/rendered?{query}"


async def test_rendered_modes_names_and_formats(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "it's a")
    await store.put(app, "B", "b\nzq9-canary")
    h = store.auth(store.admin)
    full = await store.client.get(rendered(app), headers=h)
    assert full.headers["Cache-Control"] == "no-store"
    body = await full.json()
    assert body == {
        "environment": "default",
        "revision": body["revision"],
        "secrets": {"A": "it's a", "B": "b\nzq9-canary"},
        "unset": [],
    }
    preview = await (await store.client.get(rendered(app, "mode=preview"), headers=h)).json()
    assert preview["secrets"] == {"A": MASK, "B": MASK}
    spice_alias = await (
        await store.client.get(rendered(app, "mode=PreviewOnly"), headers=h)
    ).json()
    assert spice_alias["secrets"] == {"A": MASK, "B": MASK}
    only_a = await (
        await store.client.get(rendered(app, "mode=full&names=A,NOT_THERE"), headers=h)
    ).json()
    assert only_a["secrets"] == {"A": "it's a"}
    shell = await store.client.get(rendered(app, "mode=full&format=shell"), headers=h)
    assert "export A='it'\\''s a'" in await shell.text()
    docker = await store.client.get(rendered(app, "mode=full&format=docker"), headers=h)
    assert docker.status == 422
    assert "B" in (await docker.json())["error"] and "zq9" not in (await docker.json())["error"]


async def test_rendered_etag_304_and_never_from_plaintext(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "v1")
    h = store.auth(store.admin)
    first = await store.client.get(rendered(app), headers=h)
    etag = first.headers["ETag"]
    assert "v1" not in etag
    again = await store.client.get(rendered(app), headers={**h, "If-None-Match": etag})
    assert again.status == 304
    other_variant = await store.client.get(
        rendered(app, "mode=full&names=A"), headers={**h, "If-None-Match": etag}
    )
    assert other_variant.status == 200
    await store.put(app, "A", "v2")
    await store.put(app, "A", "v1")  # the first plaintext again, at a new revision
    changed = await store.client.get(rendered(app), headers={**h, "If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_long_poll_wakes_on_write_and_times_out_with_304(store: Store) -> None:
    app = await store.app()
    await store.env(app, "other")
    await store.put(app, "A", "v1")
    h = store.auth(store.admin)
    etag = (await store.client.get(rendered(app), headers=h)).headers["ETag"]

    timed_out = await store.client.get(
        rendered(app, "mode=full&wait=0.2"), headers={**h, "If-None-Match": etag}
    )
    assert timed_out.status == 304

    async def watch() -> tuple[int, dict[str, str]]:
        resp = await store.client.get(
            rendered(app, "mode=full&wait=60"), headers={**h, "If-None-Match": etag}
        )
        return resp.status, (await resp.json())["secrets"]

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    assert not watcher.done()
    await store.put(app, "A", "unrelated", env="other")  # another environment: still waiting
    await asyncio.sleep(0.2)
    assert not watcher.done()
    await store.put(app, "A", "v2")
    status, secrets = await asyncio.wait_for(watcher, timeout=10)
    assert (status, secrets) == (200, {"A": "v2"})


async def test_long_poll_fan_out_many_watchers(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "v1")
    h = store.auth(store.admin)
    etag = (await store.client.get(rendered(app), headers=h)).headers["ETag"]

    async def watch() -> str:
        resp = await store.client.get(
            rendered(app, "mode=full&wait=60"), headers={**h, "If-None-Match": etag}
        )
        return str((await resp.json())["secrets"]["A"])

    watchers = [asyncio.create_task(watch()) for _ in range(50)]
    while store.state.service.notifier.waiting() < 50:
        await asyncio.sleep(0.01)
    await store.put(app, "A", "v2")
    assert await asyncio.wait_for(asyncio.gather(*watchers), timeout=20) == ["v2"] * 50


async def test_deleting_an_environment_wakes_its_watchers_with_404(store: Store) -> None:
    app = await store.app()
    await store.env(app, "temp")
    h = store.auth(store.admin)
    etag = (await store.client.get(rendered(app, env="temp"), headers=h)).headers["ETag"]
    watcher = asyncio.create_task(
        store.client.get(
            rendered(app, "mode=full&wait=60", env="temp"), headers={**h, "If-None-Match": etag}
        )
    )
    while store.state.service.notifier.waiting() < 1:
        await asyncio.sleep(0.01)
    deleted = await store.client.delete(f"/v1/apps/{app}/environments/temp", headers=h)
    assert deleted.status == 204
    resp = await asyncio.wait_for(watcher, timeout=10)
    assert resp.status == 404


async def test_a_write_that_changes_nothing_keeps_the_revision_and_wakes_nobody(
    store: Store,
) -> None:
    """PATCHing a description to what it is already: 200, no new revision, no long-poll wake
    (on PostgreSQL the revision taken under the lock is rolled back with its notification)."""
    app = await store.app()
    await store.put(app, "A", "v1")
    h = store.auth(store.admin)
    path = f"/v1/apps/{app}/environments/default/secrets/A"
    first = await store.client.patch(path, json={"description": "db"}, headers=h)
    assert first.status == 200
    revision = await store.revision(app)
    etag = (await store.client.get(rendered(app), headers=h)).headers["ETag"]
    watcher = asyncio.ensure_future(
        store.client.get(rendered(app, "mode=full&wait=1"), headers={**h, "If-None-Match": etag})
    )
    await asyncio.sleep(0.1)
    same = await store.client.patch(path, json={"description": "db"}, headers=h)
    assert same.status == 200 and (await same.json())["description"] == "db"
    assert await store.revision(app) == revision
    assert (await watcher).status == 304
    await store.put(app, "A", "v2")
    assert await store.revision(app) == revision + 1
