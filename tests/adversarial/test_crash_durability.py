"""SIGKILL the store under 8 concurrent writers, 20 times: nothing acknowledged is lost."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

from loader.httpclient import HttpClient
from tests.procs import free_port, init_store, run_loader, start_store

ROUNDS = 20
WRITERS = 8


def test_acknowledged_writes_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Each round: 1. 8 writers upsert fresh secrets as fast as they can; 2. SIGKILL after a
    random 0.1-0.6 s; 3. `PRAGMA integrity_check` on the files; 4. restart: every write that got
    a 2xx is there with its value, and the revision never went backwards."""
    data = tmp_path / "store"
    admin = init_store(data)
    port = free_port()
    proc = start_store(data, listen=f"127.0.0.1:{port}")
    setup = HttpClient(proc.url, token=admin)
    app = setup.call("POST", "/v1/apps", {"name": "crashy"}).json()["id"]
    setup.close()
    rng = random.Random(20261123)
    acknowledged: dict[str, str] = {}
    last_revision = 0
    stats = {"acked": 0, "failed": 0}
    for round_ in range(ROUNDS):
        lock = threading.Lock()
        stop = threading.Event()

        def writer(
            n: int,
            round_: int = round_,
            lock: threading.Lock = lock,
            stop: threading.Event = stop,
            url: str = proc.url,
        ) -> None:
            client = HttpClient(url, token=admin, timeout=5)
            i = 0
            while not stop.is_set():
                name, value = f"R{round_}_W{n}_{i}", f"value-{round_}-{n}-{i}-" + "x" * (i % 50)
                try:
                    resp = client.request(
                        "POST", f"/v1/apps/{app}/secrets", {"name": name, "value": value}
                    )
                except Exception:
                    with lock:
                        stats["failed"] += 1
                    break
                if resp.status == 200:
                    with lock:
                        acknowledged[name] = value
                        stats["acked"] += 1
                i += 1
            client.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.1, 0.6))
        proc.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
        conn = sqlite3.connect(data / "loader.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        proc = start_store(data, listen=f"127.0.0.1:{port}")
        reader = HttpClient(proc.url, token=admin)
        got = reader.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full").json()
        reader.close()
        missing = {k for k, v in acknowledged.items() if got["secrets"].get(k) != v}
        assert missing == set(), f"round {round_}: lost {len(missing)} acknowledged writes"
        assert got["revision"] >= last_revision
        last_revision = got["revision"]
    proc.stop()
    assert stats["acked"] > ROUNDS * WRITERS  # the writers really wrote
    report = run_loader("store", "token", "list", "--data-dir", str(data), "--json")
    assert json.loads(report.stdout)["tokens"]
    print(
        f"crash durability: {ROUNDS} SIGKILLs, {stats['acked']} acknowledged writes, "
        f"0 lost, final revision {last_revision}"
    )
