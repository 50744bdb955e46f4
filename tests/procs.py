"""Real child processes for the integration tests: the store, the agent, the runner."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOADER = [sys.executable, "-m", "loader"]


def loader_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADER_")}
    env.update(extra)
    return env


def run_loader(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*LOADER, *args],
        env=env or loader_env(),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def init_store(data_dir: Path) -> str:
    out = run_loader("store", "init", "--data-dir", str(data_dir), "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["admin_token"])


def wait_for_line(p: Proc, pattern: str, timeout: float = 30) -> str:
    """Poll the child's stdout file until a line matches; returns group 1 or the line."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in p.output().splitlines():
            m = regex.search(line)
            if m:
                return m.group(1) if m.groups() else line
        if p.proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(
        f"no line matching {pattern!r}; stdout={p.output()[-2000:]!r} "
        f"stderr={p.logs()[-2000:]!r} rc={p.proc.poll()}"
    )


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path
    out: Path
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""


def spawn(
    args: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Proc:
    """Start a child with stderr to ``log`` and stdout to ``log`` + ``.out``."""
    out = log.with_name(log.name + ".out")
    with log.open("ab") as err, out.open("wb") as stdout:
        proc = subprocess.Popen(
            list(args),
            stdout=stdout,
            stderr=err,
            stdin=stdin,
            env=env or loader_env(),
            start_new_session=True,
        )
    return Proc(proc, log, out)


def start_store(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, listen: str = "127.0.0.1:0"
) -> Proc:
    p = spawn(
        [*LOADER, "store", "serve", "--data-dir", str(data_dir), "--listen", listen, *args],
        data_dir.parent / f"{data_dir.name}-store.log",
        env,
    )
    try:
        p.url = wait_for_line(p, r"listening on (https?://\S+)")
    except AssertionError:
        p.stop()
        raise AssertionError(p.logs()) from None
    return p


@contextmanager
def store_process(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Proc]:
    p = start_store(data_dir, *args, env=env)
    try:
        yield p
    finally:
        p.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_agent(
    log: Path, *args: str, env: dict[str, str] | None = None, wait_listening: bool = True
) -> Proc:
    p = spawn([*LOADER, "agent", *args], log, env)
    if wait_listening:
        try:
            p.url = wait_for_line(p, r"listening on (\S+)")
        except AssertionError:
            p.stop()
            raise
    return p
