"""Every command's start-up: the time from spawning it to its first request reaching the store
(or agent), to its "listening" line for the servers, or to its exit for commands that make no
request -- each beside `python -c pass` and a floor script that only opens a connection and
sends one request, all interleaved in one run.

The store here is a recorder: it notes when a connection arrives and answers 503, so a client
exits (69) or retries; the process is then killed. Only start-up is measured, not the store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import OUT, Figure, Section, bench_venv

FLOOR = """import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /v1/apps HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
s.recv(1024)
"""
_BODY = b'{"error": "recorder", "code": "unavailable"}'
ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class Recorder:
    """A listening socket that timestamps each accepted connection and answers 503."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.first: float | None = None
        self.event = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        self.first = None
        self.event.clear()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.first is None:
                self.first = time.perf_counter()
                self.event.set()
            try:
                conn.settimeout(1)
                conn.recv(65536)
                conn.sendall(ANSWER)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _listening_line(proc: subprocess.Popen[bytes], deadline: float) -> float | None:
    assert proc.stdout is not None
    while time.perf_counter() < deadline:
        line = proc.stdout.readline()
        if not line:
            return None
        if b"listening on" in line:
            return time.perf_counter()
    return None


def measure(argv: list[str], env: dict[str, str], mode: str, rec: Recorder, stdin: bytes) -> float:
    """ms from spawn to: the first request (``request``), the listening line (``listen``) or
    the exit (``exit``)."""
    rec.reset()
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE if mode == "listen" else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    deadline = start + 30
    try:
        if mode == "exit":
            proc.wait(30)
            end = time.perf_counter()
        elif mode == "listen":
            got = _listening_line(proc, deadline)
            if got is None:
                raise RuntimeError(f"{argv[1:4]}: no listening line")
            end = got
        else:
            if not rec.event.wait(30):
                raise RuntimeError(f"{argv[1:4]}: no request arrived")
            assert rec.first is not None
            end = rec.first
        return (end - start) * 1000
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def commands(
    loader: str, py: str, work: Path, port: int
) -> dict[str, tuple[list[str], str, bytes]]:
    """name -> (argv, mode, stdin)."""
    shm = Path(tempfile.mkdtemp(prefix="bench-cli-", dir="/dev/shm"))
    data = work / "store"
    subprocess.run(
        [loader, "store", "init", "--data-dir", str(data)], capture_output=True, check=True
    )
    env_file = work / "import.env"
    env_file.write_text("A=1\nB=2\n")
    return {
        "python -c pass": ([py, "-c", "pass"], "exit", b""),
        "floor: connect + send one request": ([py, "-c", FLOOR, str(port)], "request", b""),
        "loader --help": ([loader, "--help"], "exit", b""),
        "loader secrets --help": ([loader, "secrets", "--help"], "exit", b""),
        "loader run --help": ([loader, "run", "--help"], "exit", b""),
        "loader completion bash": ([loader, "completion", "bash"], "exit", b""),
        "loader apps list": ([loader, "apps", "list"], "request", b""),
        "loader apps create": ([loader, "apps", "create", "x"], "request", b""),
        "loader apps delete": ([loader, "apps", "delete", "1", "--yes"], "request", b""),
        "loader envs list": ([loader, "envs", "list"], "request", b""),
        "loader envs create": ([loader, "envs", "create", "prod"], "request", b""),
        "loader envs delete": ([loader, "envs", "delete", "prod", "--yes"], "request", b""),
        "loader secrets list": ([loader, "secrets", "list"], "request", b""),
        "loader secrets get": ([loader, "secrets", "get", "A"], "request", b""),
        "loader secrets get --reveal": (
            [loader, "secrets", "get", "A", "--reveal"],
            "request",
            b"",
        ),
        "loader secrets set": ([loader, "secrets", "set", "A"], "request", b"value"),
        "loader secrets delete": ([loader, "secrets", "delete", "A"], "request", b""),
        "loader secrets import": ([loader, "secrets", "import", str(env_file)], "request", b""),
        "loader secrets versions": ([loader, "secrets", "versions", "A"], "request", b""),
        "loader secrets rollback": (
            [loader, "secrets", "rollback", "A", "--version", "1"],
            "request",
            b"",
        ),
        "loader secrets download": (
            [loader, "secrets", "download", "--format", "dotenv", "--output", str(shm / "d.env")],
            "request",
            b"",
        ),
        "loader audit": ([loader, "audit"], "request", b""),
        "loader run (store)": ([loader, "run", "--", "/bin/true"], "request", b""),
        "loader render --once": (
            [loader, "render", "--once", "--output", str(shm / "r.env")],
            "request",
            b"",
        ),
        "loader agent": (
            [loader, "agent", "--output", str(shm / "a.env"), "--listen", "off"],
            "request",
            b"",
        ),
        "loader store serve (listening)": (
            [loader, "store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
            "listen",
            b"",
        ),
        "loader webhook (listening)": (
            [
                loader,
                "webhook",
                "--insecure",
                "--listen",
                "127.0.0.1:0",
                "--image",
                "x",
                "--store-url",
                "http://x",
            ],
            "listen",
            b"",
        ),
    }


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    py, loader = str(bin_dir / "python"), str(bin_dir / "loader")
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    rec = Recorder()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADER_")}
    env.update(
        LOADER_STORE_URL=f"http://127.0.0.1:{rec.port}",
        LOADER_TOKEN="lt_000000000000_benchmark",
        LOADER_APP="1",
    )
    table = commands(loader, py, work, rec.port)
    runs, warmup = (1, 0) if quick else (15, 2)
    times: dict[str, list[float]] = {name: [] for name in table}
    try:
        for i in range(warmup + runs):
            for name, (argv, mode, stdin) in table.items():
                value = measure(argv, env, mode, rec, stdin)
                if i >= warmup:
                    times[name].append(value)
    finally:
        rec.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        subprocess.run("rm -rf /dev/shm/bench-cli-*", shell=True, check=False)
    section = Section("CLI start-up: each command's time to its first request")
    floor = times.pop("python -c pass")
    targets = {"loader --help": "< 5x", "loader secrets list": "< 5x"}
    for name, samples in times.items():
        section.figures.append(
            Figure(name, "ms", samples, "python -c pass", floor, targets.get(name, ""))
        )
    section.notes.append(
        f"{runs} interleaved runs after {warmup} warm-up; loader installed from its wheel in "
        "bench/out/venv. Clients: spawn to the first request accepted by a recording server "
        "(which answers 503); servers: spawn to their 'listening on' line; --help and "
        "completion: spawn to exit."
    )
    section.commands.append("bench/run cli")
    return section


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    print(run("--quick" in sys.argv))
