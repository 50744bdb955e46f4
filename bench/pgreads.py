"""`rendered?mode=full` (100 secrets) on one PostgreSQL replica, two source trees side by side:
requests/s and CPU per request of the store process and of PostgreSQL (all its processes).

    git archive issue-21 src | tar -x -C /tmp/before
    .venv/bin/python -m bench.pgreads /tmp/before/src src [--seconds 5] [--rounds 3]

Made to measure the per-replica environment cache (before: the environment row read from
PostgreSQL per request). wrk -t1 -c16 pinned to core 1, each store to core 0; runs interleaved
before/after, every response 2xx. Not part of ``bench/run``: a one-off A/B.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.pg import PostgresServer

from bench.procs import Stack, cpu_seconds
from bench.throughput import GET_LUA, _lua, make_values, wrk


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.pgreads")
    parser.add_argument("trees", type=Path, nargs="+", help="source trees (their src/)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pg = PostgresServer()
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="pgreads-"))
    stacks: dict[str, tuple[Stack, str, Path]] = {}
    try:
        for i, src in enumerate(args.trees):
            name = f"{i}:{src}"
            url = pg.url(pg.create_database())
            bin_dir = Path(sys.executable).parent
            stack = Stack(bin_dir, work / str(i), database_url=url, cpu=0, src=src.resolve())
            app = stack.app("throughput", make_values(100))
            path = f"{stack.url}/v1/apps/{app}/environments/default/rendered?mode=full"
            stacks[name] = (stack, path, _lua(work, str(i), GET_LUA, stack.admin))
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in stacks}
        for _ in range(args.rounds):
            for name, (stack, path, lua) in stacks.items():
                store = [stack.stores[0].pid]
                store0, pg0 = cpu_seconds(store), cpu_seconds(pg.processes())
                rps = wrk(path, lua, args.seconds, cpu=1)
                store1, pg1 = cpu_seconds(store), cpu_seconds(pg.processes())
                n = rps * args.seconds
                results[name].append((rps, (store1 - store0) / n * 1e6, (pg1 - pg0) / n * 1e6))
        for name, runs in results.items():
            for rps, store_us, pg_us in runs:
                print(
                    f"{name}: {rps:8.0f} req/s, store {store_us:4.0f} us/req, "
                    f"postgres {pg_us:4.0f} us/req"
                )
    finally:
        for stack, _, _ in stacks.values():
            stack.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
