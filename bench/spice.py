"""Spice rotation: a value PUT through the API -> the rendered spicepod has it, and the
reload-or-restart decision is logged; for the sidecar agent and for ``loader run --watch``
rendering the spicepod itself (one container). The Spice runtime is not available here: its
own reload time is not included.

Baseline in the same run, change by change: one HTTP round trip (the same PUT) plus one atomic
write of a file on tmpfs, read back the same way (the floor of any "store write -> file" path).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.procs import Proc, loader_env

from bench.common import Figure, Section, bench_venv, percentile, wait_for
from bench.procs import Stack, start_server
from loader.fsio import atomic_write
from loader.httpclient import HttpClient

POD = """\
version: v1
kind: Spicepod
name: bench
runtime:
  auth:
    api-key:
      keys: [$<secrets:API_KEY>]
datasets:
  - from: postgres:orders
    name: orders
    params:
      pg_pass: $<secrets:DS_PASS>
"""


RUNNER_TAIL = ["--only", "OTHER", "--log-level", "info", "--", "sleep", "1000"]


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    wait_for(check, timeout, poll=0.001)


def _count(proc: Proc, word: str) -> int:
    return proc.logs().count(word)


def measure(
    stack: Stack, app: int, proc: Proc, pod: Path, shm: Path, changes: int
) -> dict[str, list[float]]:
    """Per change, in ms: file (dataset change -> the pod has it), decision (-> its 'rewrite
    only' line), restart (API_KEY change -> its 'restart' line), and the floor."""
    client = HttpClient(stack.url, token=stack.admin)
    path = f"/v1/apps/{app}/secrets"
    floor_file = shm / "floor.yaml"
    out: dict[str, list[float]] = {"file": [], "decision": [], "restart": [], "floor": []}
    try:
        for i in range(changes):
            value = f"ds{i}-{secrets.token_hex(6)}"
            decided = _count(proc, "rewrite only")
            start = time.perf_counter()
            client.call("POST", path, {"name": "DS_PASS", "value": value})
            _until(lambda v=value: v in pod.read_text())  # type: ignore[misc]
            out["file"].append((time.perf_counter() - start) * 1000)
            _until(lambda n=decided: _count(proc, "rewrite only") > n)  # type: ignore[misc]
            out["decision"].append((time.perf_counter() - start) * 1000)

            restarts = _count(proc, "restart: API_KEY")
            start = time.perf_counter()
            client.call("POST", path, {"name": "API_KEY", "value": secrets.token_hex(8)})
            _until(lambda n=restarts: _count(proc, "restart: API_KEY") > n)  # type: ignore[misc]
            out["restart"].append((time.perf_counter() - start) * 1000)

            value = f"f{i}-{secrets.token_hex(6)}"
            start = time.perf_counter()
            client.call("POST", path, {"name": "FLOOR", "value": value})
            atomic_write(floor_file, f"pg_pass: {value}\n".encode())
            _until(lambda v=value: v in floor_file.read_text())  # type: ignore[misc]
            out["floor"].append((time.perf_counter() - start) * 1000)
            time.sleep(0.3)  # past the runner's debounce before the next change
    finally:
        client.close()
    return out


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    changes = 5 if quick else 40
    section = Section("Spice rotation: PUT -> rendered spicepod and the reload/restart decision")
    shm = Path(tempfile.mkdtemp(prefix="spice-", dir="/dev/shm"))
    work = Path(tempfile.mkdtemp(prefix="spice-"))
    template = work / "spicepod.yaml"
    template.write_text(POD)
    try:
        stack = Stack(bin_dir, work)
        try:
            initial = {"DS_PASS": "d0", "API_KEY": "k0", "OTHER": "o"}
            env = loader_env(LOADER_STORE_URL=stack.url, LOADER_TOKEN=stack.admin)
            recipes = {
                "sidecar agent": (
                    [*stack.loader, "agent", "--listen", "off", "--template"],
                    ["--on-change", "true"],
                ),
                "loader run --watch": (
                    [*stack.loader, "run", "--watch", "--store-url", stack.url, "--template"],
                    RUNNER_TAIL,
                ),
                "loader run --watch --debounce 0.01s": (
                    [*stack.loader, "run", "--watch", "--store-url", stack.url, "--template"],
                    [*RUNNER_TAIL[:2], "--debounce", "0.01s", *RUNNER_TAIL[2:]],
                ),
            }
            for label, (head, tail) in recipes.items():
                app = stack.app(f"recipe{len(section.figures)}", initial)
                pod = shm / f"recipe{len(section.figures)}.yaml"
                argv = [*head, f"{template}:{pod}", *tail]
                proc = start_server(argv, {**env, "LOADER_APP": str(app)}, work / f"{label}.log")
                try:
                    _until(pod.exists, 30)
                    figures = measure(stack, app, proc, pod, shm, changes)
                finally:
                    proc.stop()
                _add(section, label, figures)
        finally:
            stack.stop()
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    section.notes.append(
        f"{changes} changes of each kind per recipe (SQLite store, one process); the client "
        "polls the file and the log every 1 ms. 'restart' is up to the logged decision (the "
        "agent then runs --on-change; the runner then stops and starts the child, its --grace "
        "and the app's own start-up on top). The runner debounces 0.25 s by default; the agent "
        "does not. Shared 2-core machine: compare the ratios, not the absolute figures."
    )
    section.commands.append("bench/run spice")
    return section


def _add(section: Section, label: str, figures: dict[str, list[float]]) -> None:
    floor = figures["floor"]
    for key, what in (
        ("file", "dataset change -> spicepod rewritten"),
        ("decision", "dataset change -> 'rewrite only' logged"),
        ("restart", "runtime setting change -> 'restart' logged"),
    ):
        section.figures.append(
            Figure(
                f"p50, {label}: {what}",
                "ms",
                [percentile(figures[key], 50)],
                "floor p50",
                [percentile(floor, 50)],
            )
        )
