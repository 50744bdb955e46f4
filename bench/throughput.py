"""Store throughput: durable upserts/s and `rendered?mode=full` (100 secrets) requests/s under
wrk at 16 connections, beside minimal aiohttp apps (one that fsyncs a SQLite upsert per request,
one that stores nothing, one that returns the same rendered bytes); then how the cost of
rendering grows with the number of secrets (10 to 10,000), on the store and in the agent."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.procs import Proc, loader_env, wait_for_line

from bench.common import Figure, Section, bench_venv
from bench.procs import Stack, start_server

CONNECTIONS = 16

UPSERT_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
local counter = 0
local pad = string.rep("x", 32)
request = function()
  counter = counter + 1
  local body = string.format('{"name":"KEY_%%d","value":"v%%d-%%s"}', counter %% 500, counter, pad)
  return wrk.format(nil, nil, nil, body)
end
"""

GET_LUA = """
%(auth)s
"""


def _lua(work: Path, name: str, template: str, token: str | None) -> Path:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    path = work / f"{name}.lua"
    path.touch(mode=0o600)
    path.write_text(template % {"auth": auth})
    return path


def wrk(url: str, script: Path, seconds: float, cpu: int) -> float:
    """Requests/s; every response must be 2xx for the figure to count."""
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    out = subprocess.run(
        [*cmd, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} failed responses from {url}")
    errors = re.search(r"Socket errors:.*", out)
    if errors and re.search(r"(read|write|timeout) [1-9]", errors.group(0)):
        raise RuntimeError(f"socket errors against {url}: {errors.group(0)}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


async def _fill(url: str, token: str, app: int, values: dict[str, str]) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    items = list(values.items())
    async with aiohttp.ClientSession(url, headers=headers) as session:

        async def worker(offset: int) -> None:
            for name, value in items[offset::CONNECTIONS]:
                body = {"name": name, "value": value}
                async with session.post(f"/v1/apps/{app}/secrets", json=body) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"fill: HTTP {resp.status}")

        await asyncio.gather(*(worker(i) for i in range(CONNECTIONS)))


def make_values(n: int) -> dict[str, str]:
    return {f"SECRET_{i:05d}": secrets.token_urlsafe(30) for i in range(n)}


def store_render_ms(stack: Stack, sizes: list[int], repeats: int) -> dict[int, list[float]]:
    """Milliseconds for `GET rendered?mode=full` just after a write (nothing cached: every
    value decrypted and the body encoded), per size."""
    client = stack.client()
    out: dict[int, list[float]] = {}
    for n in sizes:
        app = int(client.call("POST", "/v1/apps", {"name": f"render-{n}"}).json()["id"])
        asyncio.run(_fill(stack.url, stack.admin, app, make_values(n)))
        path = f"/v1/apps/{app}/environments/default/rendered?mode=full"
        samples = []
        for i in range(repeats):
            client.call(
                "POST", f"/v1/apps/{app}/secrets", {"name": "SECRET_00000", "value": f"v{i}"}
            )
            start = time.perf_counter()
            body = client.call("GET", path).body
            samples.append((time.perf_counter() - start) * 1000)
            assert len(json.loads(body)["secrets"]) == n
        out[n] = samples
    client.close()
    return out


AGENT_RENDER = """
import json, secrets, sys, time
from loader import formats, template
from loader.eventloop import tune_gc

tune_gc()  # what `loader agent` does at start
sizes, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for n in sizes:
    values = {f"SECRET_{i:05d}": secrets.token_urlsafe(30) for i in range(n)}
    pod = "version: v1\\nkind: Spicepod\\nname: bench\\ndatasets:\\n" + "".join(
        f"  - from: postgres:t{i}\\n    name: t{i}\\n    params:\\n"
        f"      pg_pass: ${{secrets:{name}}}\\n"
        for i, name in enumerate(values)
    )
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        formats.render("dotenv", values)
        template.render(pod, values, "yaml")
        samples.append((time.perf_counter() - start) * 1000)
    out[n] = samples
print(json.dumps(out))
"""


def agent_render_ms(bin_dir: Path, sizes: list[int], repeats: int) -> dict[int, list[float]]:
    """Milliseconds the agent spends turning N values into its env file and a spicepod with N
    `${secrets:NAME}` references: the pure rendering cores, in a fresh process set up like the
    agent (its garbage-collector settings)."""
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", AGENT_RENDER, json.dumps(sizes), str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {int(k): v for k, v in json.loads(out.stdout).items()}


def growth_figures(what: str, timings: dict[int, list[float]]) -> list[Figure]:
    """Each size against ten times the size below it: 1.0x is exactly linear."""
    figures = []
    sizes = sorted(timings)
    for small, big in itertools.pairwise(sizes):
        scale = big / small
        figures.append(
            Figure(
                f"{what}, {big:,} secrets",
                "ms",
                timings[big],
                f"{scale:g} x {what} of {small:,}",
                [t * scale for t in timings[small]],
                "<= 1.2x (linear)",
            )
        )
    return figures


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    seconds, repeats = (1, 1) if quick else (5, 3)
    sizes = [10, 100] if quick else [10, 100, 1000, 10000]
    render_repeats = 3 if quick else 15
    section = Section("Store throughput and render cost")
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    procs: list[Proc] = []
    try:
        stack = Stack(bin_dir, work, cpu=0)
        app = stack.app("throughput", make_values(100))
        writes_app = stack.app("writes", {})
        rendered_path = f"/v1/apps/{app}/environments/default/rendered?mode=full"
        client = stack.client()
        body = work / "rendered.json"
        body.write_bytes(client.call("GET", rendered_path).body)
        client.close()
        python = str(bin_dir / "python")
        servers = {
            kind: start_server(
                [python, "-m", "bench.minimal", kind, "0", *extra],
                loader_env(),
                work / f"minimal-{kind}.log",
                cpu=0,
            )
            for kind, extra in {
                "durable": [str(work / "minimal.db")],
                "accept": [],
                "static": [str(body)],
            }.items()
        }
        procs += servers.values()
        base = {k: wait_for_line(p, r"listening on (\S+)") for k, p in servers.items()}
        upsert = _lua(work, "upsert", UPSERT_LUA, stack.admin)
        upsert_plain = _lua(work, "upsert-plain", UPSERT_LUA, None)
        get = _lua(work, "get", GET_LUA, stack.admin)
        get_plain = _lua(work, "get-plain", GET_LUA, None)
        ours_w, durable_w, accept_w, ours_r, static_r = [], [], [], [], []
        for _ in range(repeats):
            ours_w.append(wrk(f"{stack.url}/v1/apps/{writes_app}/secrets", upsert, seconds, cpu=1))
            durable_w.append(wrk(f"{base['durable']}/", upsert_plain, seconds, cpu=1))
            accept_w.append(wrk(f"{base['accept']}/", upsert_plain, seconds, cpu=1))
            ours_r.append(wrk(f"{stack.url}{rendered_path}", get, seconds, cpu=1))
            static_r.append(wrk(f"{base['static']}/", get_plain, seconds, cpu=1))
        section.figures += [
            Figure(
                f"durable upserts/s, c{CONNECTIONS}",
                "req/s",
                ours_w,
                "minimal aiohttp + fsynced SQLite upsert",
                durable_w,
                ">= 0.9x",
                lower_is_better=False,
            ),
            Figure(
                f"durable upserts/s, c{CONNECTIONS}",
                "req/s",
                ours_w,
                "minimal aiohttp, nothing stored",
                accept_w,
                lower_is_better=False,
            ),
            Figure(
                f"`rendered?mode=full` (100 secrets) req/s, c{CONNECTIONS}",
                "req/s",
                ours_r,
                "minimal aiohttp, same bytes",
                static_r,
                ">= 0.6x",
                lower_is_better=False,
            ),
        ]
        for p in servers.values():
            p.stop()
        section.figures += growth_figures(
            "store render after a change", store_render_ms(stack, sizes, render_repeats)
        )
        section.figures += growth_figures(
            "agent render (env file + spicepod)", agent_render_ms(bin_dir, sizes, render_repeats)
        )
        stack.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    section.notes += [
        f"wrk -t1 -c{CONNECTIONS} pinned to core 1, every server pinned to core 0; {seconds} s per "
        f"run, {repeats} runs, interleaved. Upserts write 500 names round-robin with a new value "
        "each time; the store encrypts each value, keeps a version, writes an audit record and "
        "fsyncs (SQLite WAL, synchronous=FULL) before answering. Every response must be 2xx.",
        "Render growth: each size is compared with ten times the cost at the size below, so "
        "1.0x is exactly linear and less is better than linear (fixed costs amortised). The "
        "store figure is one `GET rendered?mode=full` right after a write (every value "
        f"decrypted, nothing cached), median of {render_repeats}; the agent figure is the pure "
        "rendering of the dotenv file and a spicepod with one reference per secret, in a process "
        "with the agent's garbage-collector settings (the first render of a template also "
        "analyses it once: its slowest sample).",
        f"Median render times: {_medians_note(section)}.",
        "Where the time goes (issue 21; CPU time per request of the store process read from "
        "/proc over a wrk run, A/B of two source trees in one run, quiet machine): "
        "`rendered?mode=full` cost ~150 us before the issue, ~93 us with the token cache and "
        "the environment read by key on the loop (the floor: 21-23 us). Then: the audit writer "
        "committed one batch after another under load (it now commits once per 50 ms interval) "
        "and identical reveals are one counted record, counted by key without building it "
        "(~93 -> 72 us); request metrics as plain counts, environment and token records cached "
        "as records, the query parsed once per distinct string, no access-log line built while "
        "the log is off, hot routes first (-> 61 us). What is left is spread thin: the "
        "cheapest route of the store, `/v1/health` (no credential, no database), costs 31-36 us "
        "against the floor's 21 -- the connection guard, the route wrapper, metrics, a JSON "
        "body -- and authentication from memory (hash, compare, the WAL index's mark) ~8 us; "
        "0.6x of the floor would leave the whole authenticated, audited read the budget of "
        "`/v1/health`.",
        "Upserts: the event loop's write path waited for the writer thread with "
        "wait_for(shield(...)), two futures and a task per write; it is a plain timer now. The "
        "rest is the write itself: body validation, sealing the value and decrypting the old "
        "one to tell a write that changes nothing, about ten statements in the writer thread "
        "(secret, version, pruning, revision, audit row, savepoint), the fsync shared by a "
        "group commit. Run-to-run spread on this disk is wide (the min-max above).",
    ]
    section.commands.append("bench/run throughput")
    return section


def _medians_note(section: Section) -> str:
    parts = []
    for f in section.figures:
        if f.name.startswith(("store render", "agent render")):
            parts.append(f"{f.name}: {statistics.median(f.value):.2f} ms")
    return "; ".join(parts)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
