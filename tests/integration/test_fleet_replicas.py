"""The fleet across two store processes on one PostgreSQL database: each replica lists the
consumers that report to the other, and restart slots granted by both never exceed the
budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from loader.httpclient import HttpClient
from tests.pg import PostgresServer
from tests.procs import Proc, loader_env, run_loader, start_store, wait_until

pytestmark = pytest.mark.postgres
HEADER = "X-Loader-Consumer"


@pytest.fixture
def replicas(tmp_path: Path, pg_server: PostgresServer) -> Iterator[tuple[Proc, Proc, str]]:
    url = pg_server.url(pg_server.create_database())
    env = loader_env(LOADER_DATABASE_URL=url, LOADER_CONSUMER_FLUSH_INTERVAL="0.2s")
    init = run_loader("store", "init", "--data-dir", str(tmp_path / "keys"), "--json", env=env)
    assert init.returncode == 0, init.stderr
    admin = json.loads(init.stdout)["admin_token"]
    a = start_store(tmp_path / "keys", env=env)
    b = start_store(tmp_path / "keys", env=env)
    try:
        yield a, b, admin
    finally:
        a.stop()
        b.stop()


def _report(client: HttpClient, app: int, header: str) -> None:
    resp = client.request(
        "GET", f"/v1/apps/{app}/environments/default/rendered?mode=full", headers={HEADER: header}
    )
    assert resp.status == 200


def _ids(client: HttpClient, app: int) -> list[str]:
    data = client.call("GET", f"/v1/apps/{app}/environments/default/consumers").json()
    return [c["id"] for c in data["consumers"]]


def test_each_replica_sees_the_whole_fleet_and_shares_the_budget(
    replicas: tuple[Proc, Proc, str],
) -> None:
    """1. An agent reports to replica A, a runner to B: both replicas list both; 2. 24 runners
    ask for slots through both replicas at once, budget 3: at most 3 granted in all; 3. one
    gives its slot back through the other replica: exactly one more is granted."""
    a, b, admin = replicas
    ca, cb = HttpClient(a.url, token=admin), HttpClient(b.url, token=admin)
    app = ca.call("POST", "/v1/apps", {"name": "fleet"}).json()["id"]
    ca.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "1"})
    _report(ca, app, "id=agent-a;kind=agent;rendered=1;seq=1")
    _report(cb, app, "id=runner-b;kind=runner;rendered=1;running=1;health=healthy;seq=1")
    for client in (ca, cb):
        wait_until(lambda c=client: _ids(c, app) == ["agent-a", "runner-b"], timeout=10)

    ca.call("PUT", f"/v1/apps/{app}/environments/default/rollout", {"max_unavailable": 3})
    path = f"/v1/apps/{app}/environments/default/restarts"

    def ask(i: int) -> dict[str, Any]:
        client = HttpClient((a if i % 2 else b).url, token=admin)
        try:
            header = f"id=r{i};kind=runner;rendered=2;running=1;health=waiting;seq=1"
            resp = client.request("POST", path, {"revision": 2}, headers={HEADER: header})
            assert resp.status == 200, resp.body
            return dict(resp.json())
        finally:
            client.close()

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(24)))
    granted = [i for i, answer in enumerate(answers) if answer["granted"]]
    assert len(granted) == 3, answers
    assert all(answer["in_use"] <= 3 for answer in answers)

    holder = granted[0]
    other = cb if holder % 2 else ca  # the replica it did not ask
    header = f"id=r{holder};kind=runner;rendered=2;running=2;health=healthy;seq=2"
    released = other.request("DELETE", path, headers={HEADER: header})
    assert released.json() == {"released": True}
    with ThreadPoolExecutor(12) as pool:
        again = list(pool.map(ask, [i for i in range(24) if i not in granted]))
    assert sum(answer["granted"] for answer in again) == 1
    rollout = ca.call("GET", f"/v1/apps/{app}/environments/default/rollout").json()
    assert rollout["in_use"] == 3 and rollout["max_unavailable"] == "3"
    ca.close()
    cb.close()
