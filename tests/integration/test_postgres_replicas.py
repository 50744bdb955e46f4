"""Several store processes on one real PostgreSQL database."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from loader.store.migrations import latest
from tests.pg import PostgresServer
from tests.procs import Proc, loader_env, run_loader, start_agent, start_store, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster(
    tmp_path: Path, pg_server: PostgresServer
) -> Iterator[tuple[list[Proc], str, dict[str, str]]]:
    """A database, `store init` on it, and two `store serve` replicas sharing the key file."""
    url = pg_server.url(pg_server.create_database())
    env = loader_env(LOADER_DATABASE_URL=url)
    init = run_loader("store", "init", "--data-dir", str(tmp_path / "keys"), "--json", env=env)
    assert init.returncode == 0, init.stderr
    admin = json.loads(init.stdout)["admin_token"]
    replicas = [
        start_store(tmp_path / "keys", env=env),
        start_store(tmp_path / "keys", env=env),
    ]
    try:
        yield replicas, admin, env
    finally:
        for r in replicas:
            r.stop()


def test_write_on_one_replica_reaches_an_agent_on_the_other(
    cluster: tuple[list[Proc], str, dict[str, str]], tmp_path: Path, shm: Path
) -> None:
    (a, b), admin, env = cluster
    ca, cb = HttpClient(a.url, token=admin), HttpClient(b.url, token=admin)
    app = ca.call("POST", "/v1/apps", {"name": "replicated"}).json()["id"]
    ca.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "v1"})
    env_file = shm / "env"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--listen",
        "off",
        wait_listening=False,
        env={**env, "LOADER_STORE_URL": b.url, "LOADER_TOKEN": admin, "LOADER_APP": str(app)},
    )
    try:
        wait_until(lambda: env_file.exists() and "A=v1\n" in env_file.read_text())
        for i in range(5):  # several changes, each through replica A only
            ca.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": f"via-a-{i}"})
            wait_until(
                lambda i=i: f"A=via-a-{i}\n" in env_file.read_text(),
                what=f"change {i} on the agent following replica B",
            )
        got = cb.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full").json()
        assert got["secrets"] == {"A": "via-a-4"}
    finally:
        agent.stop()
        ca.close()
        cb.close()


def test_concurrent_writers_on_two_replicas_get_gap_free_revisions(
    cluster: tuple[list[Proc], str, dict[str, str]],
) -> None:
    """8 writers x 200 upserts of one secret, 4 per replica."""
    (a, b), admin, _ = cluster
    setup = HttpClient(a.url, token=admin)
    app = setup.call("POST", "/v1/apps", {"name": "contended"}).json()["id"]
    start = setup.call("GET", f"/v1/apps/{app}/environments/default").json()["revision"]
    results: list[list[tuple[int, str]]] = [[] for _ in range(8)]
    errors: list[str] = []

    def writer(n: int) -> None:
        client = HttpClient((a if n % 2 else b).url, token=admin)
        try:
            for i in range(200):
                value = f"w{n}-{i}"
                secret = client.call(
                    "POST", f"/v1/apps/{app}/secrets", {"name": "HOT", "value": value}
                ).json()
                revision = int(secret["etag"].strip('"').split(".")[1])
                results[n].append((revision, value))
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for mine in results:
        revisions = [r for r, _ in mine]
        assert revisions == sorted(revisions) and len(set(revisions)) == 200
    everything = sorted(r for mine in results for r, _ in mine)
    assert everything == list(range(start + 1, start + 1601))
    last_value = max(item for mine in results for item in mine)[1]
    for replica in (a, b):
        c = HttpClient(replica.url, token=admin)
        got = c.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full").json()
        assert got["secrets"] == {"HOT": last_value} and got["revision"] == start + 1600
        versions = c.call("GET", f"/v1/apps/{app}/environments/default/secrets/HOT/versions")
        assert [v["version"] for v in versions.json()["versions"]] == list(range(1600, 0, -1))
        c.close()
    setup.close()


def test_watchers_survive_a_killed_notification_connection(
    cluster: tuple[list[Proc], str, dict[str, str]], pg_server: PostgresServer
) -> None:
    (a, b), admin, env = cluster
    ca, cb = HttpClient(a.url, token=admin), HttpClient(b.url, token=admin, timeout=70)
    app = ca.call("POST", "/v1/apps", {"name": "resilient"}).json()["id"]
    ca.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "before"})
    path = f"/v1/apps/{app}/environments/default/rendered?mode=full"
    database = env["LOADER_DATABASE_URL"].rsplit("/", 1)[1]
    for round_ in range(2):
        etag = cb.call("GET", path).headers["etag"]
        killed = pg_server.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND query LIKE 'LISTEN%'"
        )
        assert int(killed) == 2  # both replicas' listeners
        result: dict[str, object] = {}

        def watch(etag: str = etag, result: dict[str, object] = result) -> None:
            resp = cb.request("GET", path + "&wait=30", headers={"If-None-Match": etag})
            result["status"], result["body"] = resp.status, resp.json()

        watcher = threading.Thread(target=watch)
        watcher.start()
        if round_ == 0:
            time.sleep(0.5)  # write after the replica has reconnected
        ca.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": f"after-{round_}"})
        watcher.join(timeout=40)
        assert not watcher.is_alive()
        assert result["status"] == 200
        assert result["body"]["secrets"] == {"A": f"after-{round_}"}  # type: ignore[index]
    logs = b.logs()
    assert "change notifications: the connection was lost; retrying" in logs
    assert "change notifications: following again after" in logs
    ca.close()
    cb.close()


def test_migrate_and_refuse_a_newer_schema(tmp_path: Path, pg_server: PostgresServer) -> None:
    db = pg_server.create_database()
    env = loader_env(LOADER_DATABASE_URL=pg_server.url(db))
    keys = tmp_path / "keys"
    fresh = run_loader(
        "store", "serve", "--data-dir", str(keys), "--listen", "127.0.0.1:0", env=env
    )
    assert fresh.returncode == 78  # no key file yet
    assert run_loader("store", "init", "--data-dir", str(keys), env=env).returncode == 0
    assert run_loader("store", "migrate", "--data-dir", str(keys), env=env).returncode == 0
    newest = str(latest("postgres"))
    assert pg_server.psql("SELECT max(version) FROM schema_migrations", db) == newest
    pg_server.psql("INSERT INTO schema_migrations VALUES (999, 'future', now())", db)
    newer = run_loader(
        "store", "serve", "--data-dir", str(keys), "--listen", "127.0.0.1:0", env=env
    )
    assert newer.returncode == 78 and b"newer" in newer.stderr


def test_pending_migrations_need_migrate(tmp_path: Path, pg_server: PostgresServer) -> None:
    db = pg_server.create_database()
    env = loader_env(LOADER_DATABASE_URL=pg_server.url(db))
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    from loader.store.keyfile import create_key_file

    create_key_file(keys / "master.key")
    refused = run_loader(
        "store", "serve", "--data-dir", str(keys), "--listen", "127.0.0.1:0", env=env
    )
    assert refused.returncode == 78 and b"migrate" in refused.stderr
    proc = start_store(keys, "--migrate", env=env)
    try:
        assert HttpClient(proc.url).call("GET", "/v1/health").json() == {"status": "ok"}
    finally:
        assert proc.stop(signal.SIGTERM) == 0
