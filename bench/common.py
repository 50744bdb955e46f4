"""Shared benchmark plumbing: a wheel-installed venv, timing statistics, the results table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


@dataclass
class Figure:
    """One measured quantity next to its baseline, measured in the same run."""

    name: str
    unit: str
    value: Sequence[float]
    baseline_name: str
    baseline: Sequence[float]
    target: str = ""
    lower_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.value) / statistics.median(self.baseline)

    def row(self) -> list[str]:
        return [
            self.name,
            spread(self.value, self.unit),
            self.baseline_name,
            spread(self.baseline, self.unit),
            f"{self.ratio:.2f}x",
            self.target,
        ]


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def spread(samples: Sequence[float], unit: str) -> str:
    med = statistics.median(samples)
    return f"{fmt(med)} {unit} ({fmt(min(samples))}-{fmt(max(samples))})"


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}; Linux {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def bench_venv(quick: bool) -> Path:
    """A venv with loader installed from its wheel (compiled .pyc, no editable-install hooks),
    as a user or a container image has it. Quick mode reuses the current interpreter."""
    if quick:
        return Path(sys.executable).parent
    venv = OUT / "venv"
    marker = venv / ".built-from"
    stamp = str(max(p.stat().st_mtime_ns for p in (ROOT / "src").rglob("*.py")))
    if marker.exists() and marker.read_text() == stamp:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    wheels = OUT / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next(wheels.glob("secret_loader-*.whl"))
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel), "click", "uvloop"],
        check=True,
    )
    marker.write_text(stamp)
    return venv / "bin"


def before_after_parser(prog: str, seconds: float) -> argparse.ArgumentParser:
    """The options of a benchmark that can also measure another source tree (``--src``: e.g.
    main's, from ``git archive main src | tar -x -C /tmp/main``) for a before/after table."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--src", type=Path, help="run the store from this source tree")
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def before_after_bin(args: argparse.Namespace) -> tuple[Path, str]:
    """The interpreter's directory for ``args`` (this one when ``--src`` is given) and a label
    for the section title."""
    if args.src:
        return Path(sys.executable).parent, f" (store from {args.src})"
    return bench_venv(args.quick), ""


def time_commands(
    commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Wall times in ms per command (hyperfine -N if installed, else a perf_counter loop);
    the commands are interleaved run by run so machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(warmup):
        for argv in commands.values():
            subprocess.run(
                argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(
                argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_for(predicate: Callable[[], bool], timeout: float = 30, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark setup timed out")
        time.sleep(poll)


def dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
