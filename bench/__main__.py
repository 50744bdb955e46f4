"""`python -m bench [--quick] [NAME ...]`: run benchmarks, print a table, write RESULTS.md."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time

from bench.common import OUT, ROOT, Section, machine_line

BENCHMARKS = [
    "propagation",
    "recovery",
    "fanout",
    "endpoint",
    "startup",
    "cli",
    "throughput",
    "memory",
    "refusals",
    "spicelist",
    "spice",
    "scale",
    "rollout",
]


def table(section: Section) -> str:
    head = ["figure", "loader", "baseline", "baseline value", "ratio", "target"]
    rows = [head, ["---"] * len(head), *(f.row() for f in section.figures)]
    lines = [f"## {section.title}", ""]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [""] + [f"- {n}" for n in section.notes]
    if section.commands:
        lines += ["", "Reproduce: " + "; ".join(f"`{c}`" for c in section.commands)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: tiny sizes, just check everything runs (CI)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    chosen = args.names or BENCHMARKS
    started = time.time()
    sections_by_name: dict[str, Section] = {}
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        section = module.run(args.quick)
        sections_by_name[name] = section
        print(table(section), flush=True)
    if args.quick:
        return 0
    write_results(sections_by_name, started)
    return 0


def write_results(fresh: dict[str, Section], started: float) -> None:
    """RESULTS.md keeps one block per benchmark; a run replaces the blocks it measured and
    keeps the others (each block says when and where it was measured)."""
    path = ROOT / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    blocks = []
    for name in BENCHMARKS:
        if name in fresh:
            body = table(fresh[name]).rstrip("\n") + f"\n\nMeasured {when} on {machine_line()}.\n"
        else:
            found = re.search(
                rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", old, flags=re.DOTALL
            )
            if found is None:
                continue
            body = found.group(1)
        blocks.append(f"<!-- bench:{name} -->\n{body}<!-- /bench:{name} -->\n")
    head = [
        "# loader benchmark results",
        "",
        "Written by `bench/run` (all) or `bench/run NAME ...` (replaces those sections). Each "
        "figure is measured beside its baseline in the same run; values are medians with "
        "(min-max) over the runs; a ratio is loader's median over the baseline's.",
        "",
    ]
    path.write_text("\n".join(head) + "\n" + "\n".join(blocks))


if __name__ == "__main__":
    raise SystemExit(main())
