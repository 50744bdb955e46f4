"""Unauthenticated load: the admin's write latency while another address floods the store with
bad-token requests, beside the same writes with no flood in the same run; and how much the
flood grows the store's files.

    python -m bench.refusals [--quick] [--src DIR] [--seconds S]

``--src`` runs the store from another source tree (e.g. an older commit's ``src``), so the
before/after comparison uses the same harness and machine.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    Figure,
    Section,
    before_after_bin,
    before_after_parser,
    bench_venv,
    percentile,
)
from bench.procs import Stack

FLOOD_CONNECTIONS = 128
FLOOD_SOURCE = "127.0.0.2"  # another client address than the admin's 127.0.0.1
REFUSAL_INTERVAL = 10.0  # the store's audit counts refusals this long before writing a record
PERIOD = 1.0  # the flood alternates: on for a second, off for a second
SETTLE = 0.1


def _writes(
    stack: Stack, app: int, seconds: float, origin: float = 0.0, period: float = 0.0
) -> tuple[list[float], list[float]]:
    """Sequential durable upserts for ``seconds``; the latency of each in ms, split into those
    made while the alternating flood was on and off (a write started within ``SETTLE`` of a
    switch counts in neither)."""
    client = stack.client()
    on: list[float] = []
    off: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    while (now := time.monotonic()) < end:
        start = time.perf_counter()
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": f"K{i % 50}", "value": str(i)})
        ms = (time.perf_counter() - start) * 1000
        i += 1
        if not period:
            off.append(ms)
            continue
        phase = (now - origin) % (2 * period)
        if now < origin or phase % period < SETTLE or phase % period > period - ms / 1000:
            continue
        (on if phase < period else off).append(ms)
    client.close()
    return on, off


def _storage(data: Path) -> tuple[int, int]:
    """Bytes of the database files, audit rows (all of them: only the flood writes now)."""
    size = sum(p.stat().st_size for p in data.iterdir() if p.name.startswith("loader.db"))
    conn = sqlite3.connect(f"file:{data / 'loader.db'}?mode=ro", uri=True)
    try:
        rows = int(conn.execute("SELECT count(*) FROM audit_events").fetchone()[0])
    finally:
        conn.close()
    return size, rows


def _flood(
    bin_dir: Path,
    stack: Stack,
    app: int,
    seconds: float,
    origin: float,
    period: float = PERIOD,
    pin: bool = True,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(["taskset", "-c", "1"] if pin else []),
            str(bin_dir / "python"),
            "-m",
            "bench.flood_client",
            stack.url,
            f"/v1/apps/{app}/secrets",
            str(seconds),
            str(FLOOD_CONNECTIONS),
            FLOOD_SOURCE,
            str(period),
            str(origin),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(stack.env),
        cwd=str(Path(__file__).resolve().parents[1]),
    )


def measure(
    bin_dir: Path, seconds: float, repeats: int, src: Path | None = None, pin: bool = True
) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refusals-"))
    out: dict = {"base": [], "flood": [], "floods": [], "growth": []}
    try:
        stack = Stack(bin_dir, work, cpu=0 if pin else None, src=src)
        app = stack.app("flooded", {"A": "a"})
        _writes(stack, app, 1.0)  # warm up
        for _ in range(repeats):
            # 1. the admin's writes, with the flood on and off by turns (so the machine's other
            # load, and its drift, fall on both alike)
            origin = time.monotonic() + 1.0
            flood = _flood(bin_dir, stack, app, 2 * seconds, origin, pin=pin)
            flooded, quiet = _writes(stack, app, 2 * seconds + 1.0, origin, PERIOD)
            out["flood"].append(flooded)
            out["base"].append(quiet)
            result, _ = flood.communicate(timeout=seconds + 60)
            out["floods"].append(json.loads(result))
            # 3. a flood alone, for what it leaves on disk (after a refusal interval)
            time.sleep(1.0)
            before = _storage(stack.data)
            _flood(bin_dir, stack, app, seconds, time.monotonic(), 0.0, pin).communicate(
                timeout=seconds + 60
            )
            time.sleep(REFUSAL_INTERVAL + 1.0)
            after = _storage(stack.data)
            out["growth"].append((after[0] - before[0], after[1] - before[1]))
        stack.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def section(out: dict, seconds: float, label: str = "", pin: bool = True) -> Section:
    s = Section(f"Unauthenticated load: admin writes under a bad-token flood{label}")
    for p, name in ((50, "median"), (99, "p99")):
        s.figures.append(
            Figure(
                f"admin write {name}, flooded",
                "ms",
                [percentile(run, p) for run in out["flood"]],
                "same writes, flood off",
                [percentile(run, p) for run in out["base"]],
                "<= 1.5x" if p == 50 else "<= 2x",
            )
        )
    sent = [sum(f["statuses"].values()) for f in out["floods"]]
    statuses: dict[str, int] = {}
    for f in out["floods"]:
        for code, n in f["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    growth = ", ".join(f"{b / 1024:.0f} KiB and {r:,} audit rows" for b, r in out["growth"])
    s.notes += [
        f"{FLOOD_CONNECTIONS} keep-alive connections from {FLOOD_SOURCE} send `GET "
        f"/v1/apps/N/secrets` with a made-up token as fast as answered, on for {PERIOD:g} s "
        f"and off for {PERIOD:g} s by turns over {2 * seconds:g} s "
        f"({statistics.median(sent) / seconds:,.0f} requests/s while on; statuses over all "
        f"runs: {json.dumps(statuses, sort_keys=True)}), while the admin on 127.0.0.1 makes "
        "sequential durable upserts throughout; a write counts as flooded or not by when it "
        f"started (not within {SETTLE:g} s of a switch). "
        + ("Store pinned to core 0, the flood to core 1" if pin else "Nothing pinned")
        + "; the machine was shared with other work, so the ratios matter, not the ms.",
        f"Storage growth per {seconds:g} s flood alone (database files, audit rows; measured "
        f"{REFUSAL_INTERVAL + 1:g} s after it): {growth}.",
    ]
    s.commands.append("bench/run refusals")
    return s


def run(quick: bool) -> Section:
    seconds, repeats = (2.0, 1) if quick else (15.0, 3)
    return section(measure(bench_venv(quick), seconds, repeats), seconds)


def main() -> None:
    from bench.__main__ import table

    parser = before_after_parser("bench.refusals", 15.0)
    parser.add_argument("--no-pin", action="store_true", help="let the OS place every process")
    args = parser.parse_args()
    bin_dir, label = before_after_bin(args)
    out = measure(bin_dir, args.seconds, args.repeats, args.src, not args.no_pin)
    print(table(section(out, args.seconds, label, not args.no_pin)))


if __name__ == "__main__":
    main()
