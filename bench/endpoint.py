"""The agent's local endpoint: `GET /v1/secrets` (100 secrets) under wrk at 1 and 16
connections, beside a minimal aiohttp app returning the same bytes; server pinned to one core,
load on the other. Also over the unix socket (a small keep-alive client; wrk has no unix
sockets)."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.procs import Proc, loader_env, wait_for_line

from bench.common import Figure, Section, bench_venv
from bench.procs import Stack, start_server

HEADERS = ["X-Loader-Request: true"]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, seconds: float, cpu: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk pinned to ``cpu``."""
    cmd = [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
    ]
    for h in HEADERS:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert m is not None, out
    return rps, float(m.group(1)) * UNITS[m.group(2)]


async def _unix_client(path: str, connections: int, seconds: float) -> float:
    request = b"GET /v1/secrets HTTP/1.1\r\nHost: localhost\r\nX-Loader-Request: true\r\n\r\n"
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_unix_connection(path)
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            done += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return done / (time.perf_counter() - start)


def unix_rps(bin_dir: Path, path: str, connections: int, seconds: float, cpu: int) -> float:
    code = (
        "import asyncio, sys; from bench.endpoint import _unix_client; "
        f"print(asyncio.run(_unix_client({path!r}, {connections}, {seconds})))"
    )
    out = subprocess.run(
        ["taskset", "-c", str(cpu), str(bin_dir / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    return float(out.stdout.strip())


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    seconds, repeats = (1, 1) if quick else (5, 3)
    section = Section("Local endpoint: agent `GET /v1/secrets` (100 secrets), wrk")
    work = Path(tempfile.mkdtemp(prefix="endpoint-"))
    shm = Path(tempfile.mkdtemp(prefix="endpoint-", dir="/dev/shm"))
    values = {f"SECRET_{i:03d}": secrets.token_urlsafe(30) for i in range(100)}
    procs: list[Proc] = []
    try:
        stack = Stack(bin_dir, work)
        app = stack.app("endpoint", values)
        agent, url = stack.agent(app, shm / "env", cpu=0)
        sock = shm / "agent.sock"
        unix_agent, _ = stack.agent(
            app, shm / "env2", listen=f"unix:{sock}", cpu=0, name="agent-unix"
        )
        procs += [agent, unix_agent]
        body = work / "body.json"
        from loader.httpclient import HttpClient

        c = HttpClient(url, headers={"X-Loader-Request": "true"})
        body.write_bytes(c.call("GET", "/v1/secrets").body)
        c.close()
        minimal = start_server(
            [str(bin_dir / "python"), "-m", "bench.minimal", "static", "0", str(body)],
            loader_env(),
            work / "minimal.log",
            cpu=0,
        )
        minimal_url = wait_for_line(minimal, r"listening on (\S+)")
        msock = shm / "minimal.sock"
        minimal_unix = start_server(
            [str(bin_dir / "python"), "-m", "bench.minimal", "unix", str(msock), str(body)],
            loader_env(),
            work / "minimal-unix.log",
            cpu=0,
        )
        wait_for_line(minimal_unix, "listening on")
        procs += [minimal, minimal_unix]
        for connections in (1, 16):
            ours_rps, base_rps, ours_p99, base_p99 = [], [], [], []
            for _ in range(repeats):
                rps, p99 = wrk(f"{url}/v1/secrets", connections, seconds, cpu=1)
                ours_rps.append(rps)
                ours_p99.append(p99)
                rps, p99 = wrk(f"{minimal_url}/v1/secrets", connections, seconds, cpu=1)
                base_rps.append(rps)
                base_p99.append(p99)
            section.figures.append(
                Figure(
                    f"requests/s, {connections} connection(s), TCP",
                    "req/s",
                    ours_rps,
                    "minimal aiohttp app",
                    base_rps,
                    ">= 0.8x",
                    lower_is_better=False,
                )
            )
            section.figures.append(
                Figure(
                    f"p99 latency, {connections} connection(s), TCP",
                    "ms",
                    ours_p99,
                    "minimal aiohttp app",
                    base_p99,
                    "<= 1 ms at c1" if connections == 1 else "",
                )
            )
            ours_u, base_u = [], []
            for _ in range(repeats):
                ours_u.append(unix_rps(bin_dir, str(sock), connections, seconds, cpu=1))
                base_u.append(unix_rps(bin_dir, str(msock), connections, seconds, cpu=1))
            section.figures.append(
                Figure(
                    f"requests/s, {connections} connection(s), unix socket",
                    "req/s",
                    ours_u,
                    "minimal aiohttp app",
                    base_u,
                    ">= 0.8x",
                    lower_is_better=False,
                )
            )
        stack.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    section.notes.append(
        f"wrk -t1 pinned to core 1, servers pinned to core 0; {seconds} s per run, {repeats} "
        "runs; both servers answer the same 100-secret JSON body; the agent also checks Host, "
        "X-Loader-Request and Origin on every request. Servers run on uvloop when installed."
    )
    section.commands.append("bench/run endpoint")
    return section


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
