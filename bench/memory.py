"""Memory: idle RSS of the agent and the store just after start and after a long stretch of
changes (every change followed by the agent, re-rendered to its env file and a spicepod, and
read from its local endpoint), beside an idle minimal aiohttp app in the same run.

The stretch lasts 10 minutes by default (`BENCH_MEMORY_SECONDS` changes it); `--quick` 3 s."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.procs import Proc, loader_env, wait_for_line

from bench.common import Figure, Section, bench_venv
from bench.procs import Stack, start_server

SETTLE = 2.0
RATE = 20  # changes per second


def mib(kib: int) -> float:
    return kib / 1024


def _settled_rss(procs: list[Proc]) -> list[float]:
    time.sleep(SETTLE)
    return [mib(p.rss_kib()) for p in procs]


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    seconds = 3.0 if quick else float(os.environ.get("BENCH_MEMORY_SECONDS", "600"))
    section = Section("Memory: idle RSS before and after a stretch of changes")
    work = Path(tempfile.mkdtemp(prefix="memory-"))
    shm = Path(tempfile.mkdtemp(prefix="memory-", dir="/dev/shm"))
    procs: list[Proc] = []
    try:
        stack = Stack(bin_dir, work)
        names = [f"SECRET_{i:03d}" for i in range(100)]
        app = stack.app("memory", {n: secrets.token_urlsafe(30) for n in names})
        template = shm / "spicepod.tmpl.yaml"
        template.write_text(
            "version: v1\nkind: Spicepod\nname: memory\ndatasets:\n"
            + "".join(
                f"  - from: postgres:t{i}\n    name: t{i}\n    params:\n"
                f"      pg_pass: ${{secrets:{n}}}\n"
                for i, n in enumerate(names)
            )
        )
        agent, agent_url = stack.agent(
            app, shm / "env", template=template, template_output=shm / "spicepod.yaml"
        )
        minimal = start_server(
            [str(bin_dir / "python"), "-m", "bench.minimal", "accept", "0"],
            loader_env(),
            work / "minimal.log",
        )
        wait_for_line(minimal, "listening on")
        store = stack.stores[0]
        procs += [agent, minimal]
        agent_start, store_start, minimal_rss = _settled_rss([agent, store, minimal])

        from loader.httpclient import HttpClient

        writer = stack.client()
        reader = HttpClient(agent_url, headers={"X-Loader-Request": "true"})
        changes = 0
        samples: list[tuple[float, float, float]] = []
        start = time.monotonic()
        next_sample = start
        while (now := time.monotonic()) - start < seconds:
            name = names[changes % len(names)]
            writer.call(
                "POST",
                f"/v1/apps/{app}/secrets",
                {"name": name, "value": secrets.token_urlsafe(30)},
            )
            changes += 1
            if changes % RATE == 0:
                reader.call("GET", "/v1/secrets")
            if now >= next_sample:
                samples.append((now - start, mib(agent.rss_kib()), mib(store.rss_kib())))
                next_sample = now + max(seconds / 20, 0.5)
            time.sleep(max(0.0, start + changes / RATE - time.monotonic()))
        last = writer.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        want = last.json()["revision"]
        deadline = time.monotonic() + 10
        while int(reader.call("GET", "/v1/secrets").headers["x-loader-revision"]) < want:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent did not follow the last change")
            time.sleep(0.05)
        writer.close()
        reader.close()
        agent_end, store_end = _settled_rss([agent, store])
        stack.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    stretch = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
    section.figures += [
        Figure(
            "agent idle RSS after start",
            "MiB",
            [agent_start],
            "minimal aiohttp app, idle",
            [minimal_rss],
            "<= 50 MiB",
        ),
        Figure(
            f"agent idle RSS after {stretch} of changes",
            "MiB",
            [agent_end],
            "the agent after start",
            [agent_start],
            "no growth",
        ),
        Figure(
            "store idle RSS after start",
            "MiB",
            [store_start],
            "minimal aiohttp app, idle",
            [minimal_rss],
        ),
        Figure(
            f"store idle RSS after {stretch} of changes",
            "MiB",
            [store_end],
            "the store after start",
            [store_start],
            "no growth",
        ),
    ]
    half = [s for s in samples if s[0] >= seconds / 2]
    if len(half) >= 2:
        section.notes.append(
            "RSS over the second half of the stretch: agent "
            f"{half[0][1]:.1f} -> {half[-1][1]:.1f} MiB, store {half[0][2]:.1f} -> "
            f"{half[-1][2]:.1f} MiB."
        )
    section.notes += [
        f"{changes:,} changes at {RATE}/s to an app of 100 secrets, each followed by the agent "
        "(env file and a 100-reference spicepod re-rendered on tmpfs); the agent's local "
        f"endpoint read once a second. RSS read from /proc/PID/status {SETTLE:g} s after the "
        "load stops. SQLite store, one process each.",
        "Context: Vault Agent idles at 13-20 MiB in real-world reports; a Python process "
        "with aiohttp loaded starts near the minimal app's figure.",
    ]
    section.commands.append("bench/run memory  (BENCH_MEMORY_SECONDS=600 by default)")
    return section


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
