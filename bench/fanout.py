"""Fan-out: N idle long-poll watchers on one store process, one write, time until every
watcher has its 200; beside a minimal aiohttp long-poll server holding the same watchers."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.procs import Proc, loader_env, wait_for_line

from bench.common import Figure, Section, bench_venv
from bench.procs import Stack, start_server

SIZES = (1000, 5000, 10000)
# Caps meant for attackers, lifted: long-polls per token and connections per address (every
# watcher here holds the same token from one address). The audit queue keeps its default: the
# woken watchers' identical reveals are counted into one record.
UNCAPPED = ("--max-long-polls-per-token", "100000", "--max-connections-per-client", "0")


PROFILE = (
    "Where the time goes (issue 21): before, each woken watcher queued its own audit record "
    "(10,000 rows inserted on the writer thread, the queue lifted past its default) and the "
    "woken path built a record, a fresh environment record and metrics through "
    "prometheus-client's locks; now the woken reveals of one token are one counted record "
    "(counted by key), all watchers share one newest environment record and one prepared "
    "body, and metrics are plain counts. What each woken watcher still does beyond the "
    "minimal server: the token re-check after the wait (from memory: one pread of the WAL "
    "index), four nested coroutine frames resumed instead of one, the route wrapper, and "
    "aiohttp's request object for a dynamic route -- a few microseconds each."
)


def _client(bin_dir: Path, server: Proc, args: list[str]) -> tuple[dict[str, float], float]:
    client = subprocess.Popen(
        [str(bin_dir / "python"), "-m", "bench.fanout_client", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert client.stdin is not None and client.stdout is not None
    before = server.rss_kib()
    ready = json.loads(client.stdout.readline())
    assert ready == {"ready": True}
    held = server.rss_kib()
    client.stdin.write("go\n")
    client.stdin.flush()
    result = json.loads(client.stdout.readline())
    client.wait(60)
    n = int(args[-1])
    return result, max(0.0, (held - before) / n)


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    sizes = (200,) if quick else SIZES
    repeats = 1 if quick else 3
    section = Section("Fan-out: one write wakes N idle long-poll watchers (one store process)")
    growth = []
    for n in sizes:
        ours_ms, base_ms, ours_kib, base_kib = [], [], [], []
        for _ in range(repeats):
            work = Path(tempfile.mkdtemp(prefix="fanout-"))
            # N watchers on one token from one address: lift the caps meant for attackers.
            stack = Stack(bin_dir, work, extra=UNCAPPED)
            app = stack.app("fanout", {"A": "a", "B": "b", "C": "c"})
            body = work / "body.json"  # the minimal server answers with the same bytes
            c = stack.client()
            rendered = f"/v1/apps/{app}/environments/default/rendered?mode=full"
            body.write_bytes(c.call("GET", rendered).body)
            c.close()
            result, kib = _client(
                bin_dir, stack.stores[0], ["loader", stack.url, stack.admin, str(app), str(n)]
            )
            stack.stop()
            ours_ms.append(result["all_ms"])
            ours_kib.append(kib)
            minimal = start_server(
                [str(bin_dir / "python"), "-m", "bench.minimal", "longpoll", "0", str(body)],
                loader_env(),
                work / "minimal.log",
            )
            url = wait_for_line(minimal, r"listening on (\S+)")
            result, kib = _client(bin_dir, minimal, ["minimal", url, "-", "-", str(n)])
            minimal.stop()
            base_ms.append(result["all_ms"])
            base_kib.append(kib)
            subprocess.run(["rm", "-rf", str(work)], check=False)
        section.figures.append(
            Figure(
                f"all {n:,} watchers answered",
                "ms",
                ours_ms,
                "minimal aiohttp long-poll",
                base_ms,
                "<= 1.2x",
            )
        )
        section.figures.append(
            Figure(
                f"memory per watcher (N={n:,})",
                "KiB",
                ours_kib,
                "minimal aiohttp long-poll",
                base_kib,
                "<= 1.5x",
            )
        )
        growth.append((n, statistics.median(ours_ms)))
    if len(growth) > 1:
        per = ", ".join(f"{ms / n * 1000:.0f} us/watcher at {n:,}" for n, ms in growth)
        section.notes.append(f"Cost per watcher as N grows: {per} (linear or better).")
    section.notes.append(
        f"{repeats} runs per size; watchers are held by one client process (asyncio streams, "
        "one connection each) sending both servers the same request (path, token, "
        "If-None-Match; the store with its caps on long-polls per token and connections per "
        "address lifted); both answer with the same body (the environment's 3 secrets) and "
        "headers; the store's write is a durable SQLite commit. Memory per watcher: the "
        "server's RSS growth while the watchers are parked, / N."
    )
    section.notes.append(PROFILE)
    section.commands.append("bench/run fanout")
    return section


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
