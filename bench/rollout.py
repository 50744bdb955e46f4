"""Rollout at scale: 2,000 runner-like consumers (a few client processes,
:mod:`bench.rollout_client`) long-polling two store replicas on one PostgreSQL; one rotation with
``max-unavailable: 10%`` beside the same rotation with no budget (every runner restarts at
once: the restart storm), measured in the same run. Figures: how long each takes, the store's
cost per consumer (store and PostgreSQL CPU, database transactions, requests), the most slots
ever in use (sampled, and from the consumers' own grant/release times), what a quiet long-poll
costs the database, and when ``loader rollout status --wait`` returned."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.procs import loader_env

from bench.common import ROOT, Figure, Section, bench_venv
from bench.fanout import UNCAPPED
from bench.procs import Stack, cpu_seconds

SETTLE = 11.0  # PostgreSQL flushes an idle backend's statistics within 10 s


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


class Probe:
    """The store's cost so far: CPU of the replicas and PostgreSQL, commits, metrics."""

    def __init__(self, stack: Stack, pg: Any, database: str, settle: float) -> None:
        self.stack, self.pg, self.database, self.settle = stack, pg, database, settle

    def read(self) -> dict[str, float]:
        pids = [p.pid for p in self.stack.stores]
        metrics = ""
        for i in range(len(self.stack.urls)):
            c = self.stack.client(i)
            metrics += c.request("GET", "/metrics").body.decode()
            c.close()
        commits = self.pg.psql(
            f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{self.database}'"
        )
        return {
            "time": time.monotonic(),
            "store_cpu": cpu_seconds(pids),
            "pg_cpu": cpu_seconds(self.pg.processes()),
            "commits": float(commits.strip() or 0),
            "rows": _metric(metrics, "loader_store_consumer_rows_written_total"),
            "batches": _metric(metrics, "loader_store_consumer_batches_total"),
            "reports": _metric(metrics, "loader_store_consumer_reports_total"),
            "requests": _metric(metrics, "loader_store_requests_total"),
        }


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def _rotate(stack: Stack, app: int, value: str, probe: Probe, n: int) -> dict[str, Any]:
    """Write a new value; wait until every consumer runs it; sample the slots in use."""
    c = stack.client()
    path = f"/v1/apps/{app}/environments/default"
    before = probe.read()
    c.call("POST", f"{path}/secrets", {"name": "A", "value": value})
    revision = c.call("GET", path).json()["revision"]
    status = subprocess.Popen(
        [
            str(stack.bin_dir / "loader"),
            "rollout",
            "status",
            "--app",
            str(app),
            "--store-url",
            stack.urls[1],
            "--wait",
            "--timeout",
            "10m",
        ],
        env=loader_env(LOADER_TOKEN=stack.admin),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    in_use, lag = [], []
    while True:
        answer = c.request("GET", f"{path}/consumers")
        if answer.status != 200:  # (a busy store: 503 with Retry-After)
            time.sleep(0.2)
            continue
        fleet = answer.json()
        rollout = fleet["rollout"]
        in_use.append(rollout["in_use"])
        lag.append(rollout["lag"])
        if fleet["revision"] == revision and rollout["done"]:
            break
        if time.monotonic() - started > 600:
            raise RuntimeError(f"rollout stuck: {rollout}")
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    after = probe.read()
    code = status.wait(60)
    status_after = time.monotonic() - started
    c.close()
    time.sleep(probe.settle)  # PostgreSQL's counters of idle backends catch up
    after["commits"] = probe.read()["commits"]
    return {
        "revision": revision,
        "seconds": elapsed,
        "cost": _delta(before, after),
        "max_in_use": max(in_use),
        "status_exit": code,
        "status_seconds": status_after,
        "samples": len(in_use),
    }


def _most_at_once(intervals: list[list[float]], revision: int) -> int:
    events = []
    for rev, granted, released in intervals:
        if rev == revision:
            events += [(granted, 1), (released, -1)]
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    n, procs, min_ready, idle = (100, 2, 0.3, 3.0) if quick else (2000, 4, 1.0, 180.0)
    section = Section(
        f"Rollout: {n:,} runner-like consumers, two replicas on PostgreSQL, max-unavailable 10%"
    )
    from bench.propagation import _postgres

    pg = _postgres()
    if pg is None:
        section.notes.append("PostgreSQL is not installed here: nothing measured.")
        return section
    work = Path(tempfile.mkdtemp(prefix="rollout-"))
    clients: list[subprocess.Popen[str]] = []
    stack = None
    try:
        database = pg.create_database()
        stack = Stack(bin_dir, work, database_url=pg.url(database), replicas=2, extra=UNCAPPED)
        app = stack.app("rollout", {"A": "v1"})
        per = n // procs
        for i in range(procs):
            clients.append(
                subprocess.Popen(
                    [
                        str(bin_dir / "python"),
                        "-m",
                        "bench.rollout_client",
                        ",".join(stack.urls),
                        stack.admin,
                        str(app),
                        str(i * per),
                        str(per),
                        str(min_ready),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=str(ROOT),
                )
            )
        for client in clients:
            assert client.stdout is not None
            assert json.loads(client.stdout.readline()) == {"ready": True}
        probe = Probe(stack, pg, database, 0.0 if quick else SETTLE)
        time.sleep(probe.settle or 2.0)  # the first reports flushed, the counters caught up
        quiet_before = probe.read()
        time.sleep(idle)
        quiet = _delta(quiet_before, probe.read())
        time.sleep(probe.settle)
        storm = _rotate(stack, app, "v2", probe, n)
        c = stack.client(1)
        c.call("PUT", f"/v1/apps/{app}/environments/default/rollout", {"max_unavailable": "10%"})
        c.close()
        paced = _rotate(stack, app, "v3", probe, n)
        intervals: list[list[float]] = []
        requests = errors = 0
        for client in clients:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write("stop\n")
            client.stdin.flush()
            result = json.loads(client.stdout.readline())
            intervals += result["intervals"]
            requests += result["requests"]
            errors += result["errors"]
            client.wait(60)
        clients = []
        most = _most_at_once(intervals, paced["revision"])
        budget = max(1, n * 10 // 100)
        _figures(section, n, storm, paced, quiet, idle, most, budget)
        section.notes.append(
            f"{procs} client processes x {per} consumers, alternating between the replicas; a "
            f"consumer's new child is healthy after {min_ready:g} s; slots asked for again "
            "with the runner's jittered backoff (0.5 s doubling to 4 s). One run of each "
            "(shared 2-core machine: other engineers' test suites ran beside it; the figures "
            "are noisy, the budget checks are not)."
        )
        section.notes.append(
            f"Budget: {budget} slots. Most slots held at once: {paced['max_in_use']} sampled "
            f"from the store every 0.2 s ({paced['samples']} samples), {most} from the "
            "consumers' own grant and release times. `loader rollout status --wait` (on the "
            f"other replica) exited {paced['status_exit']} after "
            f"{paced['status_seconds']:.1f} s (the rollout was done at "
            f"{paced['seconds']:.1f} s; it polls every second)."
        )
        section.notes.append(
            f"Consumers' requests in all: {requests:,}; answered with an error (and retried, "
            f"as a runner does): {errors:,}."
        )
        if most > budget or paced["max_in_use"] > budget:
            section.notes.append("BUDGET EXCEEDED")
    finally:
        for client in clients:
            client.kill()
        if stack is not None:
            stack.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    section.commands.append("bench/run rollout")
    return section


def _figures(
    section: Section,
    n: int,
    storm: dict[str, Any],
    paced: dict[str, Any],
    quiet: dict[str, float],
    idle: float,
    most: int,
    budget: int,
) -> None:
    section.figures.append(
        Figure(
            "rotation done (every consumer on the new revision)",
            "s",
            [paced["seconds"]],
            "same rotation, no budget (all at once)",
            [storm["seconds"]],
            "waves: ~10 x (restart + retry)",
        )
    )
    for key, label, unit, scale in (
        ("store_cpu", "store CPU per consumer", "ms", 1000.0),
        ("pg_cpu", "PostgreSQL CPU per consumer", "ms", 1000.0),
        ("commits", "database transactions per consumer", "tx", 1.0),
        ("requests", "store requests per consumer", "req", 1.0),
    ):
        section.figures.append(
            Figure(
                f"{label}, rotation with budget",
                unit,
                [paced["cost"][key] * scale / n],
                "same, no budget",
                [storm["cost"][key] * scale / n],
            )
        )
    section.figures.append(
        Figure(
            "most slots in use at once",
            "slots",
            [max(most, paced["max_in_use"])],
            "budget (10%)",
            [budget],
            "<= 1.0x",
        )
    )
    minutes = quiet["time"] / 60
    if not quiet["reports"]:
        return  # (--quick: too short a quiet spell for a long-poll to come round)
    section.figures.append(
        Figure(
            "quiet fleet: consumer rows written per consumer per minute",
            "rows",
            [quiet["rows"] / n / minutes],
            "long-polls per consumer per minute (a write each)",
            [quiet["reports"] / n / minutes],
            "well below 1.0x",
        )
    )
    section.notes.append(
        f"Quiet fleet over {idle:g} s: {quiet['commits'] / minutes:.0f} database transactions "
        f"per minute in all, of which {quiet['batches'] / minutes:.0f} the batched report "
        f"writer's ({quiet['rows'] / minutes:.0f} consumer rows per minute; the rest are the "
        "runtime reads' own lookups, one or two per long-poll, not this issue's); store CPU "
        f"{quiet['store_cpu'] * 1000 / n / minutes:.2f} ms per consumer per minute."
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
