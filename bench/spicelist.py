"""The Spice list route with many secrets: `/v1/health` latency while 8 clients list an app of
20,000 secrets over and over, beside the same health checks with nobody listing, in the same
run; and the time of one list.

    python -m bench.spicelist [--quick] [--src DIR] [--secrets N] [--seconds S]

``--src`` runs the store from another source tree (e.g. an older commit's ``src``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from bench.common import (
    Figure,
    Section,
    before_after_bin,
    before_after_parser,
    bench_venv,
    percentile,
)
from bench.procs import Stack

LISTERS = 8
PROBE = 0.005  # a health check every 5 ms


def _fill(stack: Stack, app: int, count: int) -> None:
    names = [f"SECRET_{i:05d}" for i in range(count)]

    def put(chunk: list[str]) -> None:
        client = stack.client()
        for name in chunk:
            client.call("POST", f"/v1/apps/{app}/secrets", {"name": name, "value": name.lower()})
        client.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, [names[i::8] for i in range(8)]))


def _health(stack: Stack, seconds: float) -> list[float]:
    """`/v1/health` every ``PROBE`` seconds on a fixed schedule (a probe does not wait for the
    one before: no coordinated omission), each timed from when it was due, in ms."""

    async def probe() -> list[float]:
        latencies: list[float] = []
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:

            async def one(due: float) -> None:
                async with session.get(f"{stack.url}/v1/health") as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append((loop.time() - due) * 1000)

            start = loop.time()
            tasks = []
            for i in range(int(seconds / PROBE)):
                due = start + i * PROBE
                await asyncio.sleep(max(0.0, due - loop.time()))
                tasks.append(asyncio.create_task(one(due)))
            await asyncio.gather(*tasks)
        return latencies

    return asyncio.run(probe())


def _one_list(stack: Stack, app: int) -> tuple[float, int]:
    client = stack.client()
    start = time.perf_counter()
    body = client.call("GET", f"/v1/apps/{app}/secrets").body
    ms = (time.perf_counter() - start) * 1000
    client.close()
    return ms, len(body)


def measure(bin_dir: Path, count: int, seconds: float, repeats: int, src: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="spicelist-"))
    out: dict = {"idle": [], "loaded": [], "single": [], "lists": [], "bytes": 0}
    try:
        stack = Stack(bin_dir, work, cpu=0, src=src)
        app = stack.app("many", {})
        _fill(stack, app, count)
        for _ in range(repeats):
            out["idle"].append(_health(stack, seconds))
            ms, size = _one_list(stack, app)
            out["single"].append(ms)
            out["bytes"] = size
            listers = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    str(bin_dir / "python"),
                    "-m",
                    "bench.list_client",
                    stack.url,
                    stack.admin,
                    str(app),
                    str(LISTERS),
                    str(seconds + 1.0),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=dict(stack.env),
                cwd=str(Path(__file__).resolve().parents[1]),
            )
            time.sleep(1.0)  # every lister has a list under way
            out["loaded"].append(_health(stack, seconds))
            result, _ = listers.communicate(timeout=seconds + 120)
            out["lists"] += json.loads(result)["times"]
        stack.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def section(out: dict, count: int, seconds: float, label: str = "") -> Section:
    s = Section(f"Spice list route: health while {LISTERS} clients list {count:,} secrets{label}")
    for p in (50, 90, 99):
        s.figures.append(
            Figure(
                f"`/v1/health` p{p}, {LISTERS} listing",
                "ms",
                [percentile(run, p) for run in out["loaded"]],
                "same, nobody listing",
                [percentile(run, p) for run in out["idle"]],
                "<= 5x",
            )
        )
    lists = out["lists"] or [0.0]
    s.notes += [
        f"One list alone: {statistics.median(out['single']):,.0f} ms for "
        f"{out['bytes'] / 1e6:.1f} MB; under {LISTERS} concurrent listers each took "
        f"{statistics.median(lists):,.0f} ms (median of {len(out['lists'])}).",
        f"The listers ({LISTERS} connections, aiohttp, pinned to core 1) list without pause "
        f"while `/v1/health` is asked every {PROBE * 1000:g} ms on a fixed schedule for "
        f"{seconds:g} s (a check does not wait for the one before; each is timed from when it "
        "was due, so a stalled store counts every check it stalled); the baseline is the same "
        "checks just before with nobody listing. Store pinned to core 0; the machine was "
        "shared with other work, so the ratios matter, not the ms.",
    ]
    s.commands.append("bench/run spicelist")
    return s


def run(quick: bool) -> Section:
    count, seconds, repeats = (1200, 2.0, 1) if quick else (20000, 10.0, 3)
    return section(measure(bench_venv(quick), count, seconds, repeats, None), count, seconds)


def main() -> None:
    from bench.__main__ import table

    parser = before_after_parser("bench.spicelist", 10.0)
    parser.add_argument("--secrets", type=int, default=20000)
    args = parser.parse_args()
    bin_dir, label = before_after_bin(args)
    out = measure(bin_dir, args.secrets, args.seconds, args.repeats, args.src)
    print(table(section(out, args.secrets, args.seconds, label)))


if __name__ == "__main__":
    main()
