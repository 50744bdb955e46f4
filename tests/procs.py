"""Real child processes for the integration tests (and the benchmarks, ``bench/``): the store,
the agent, the runner."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loader.httpclient import HttpClient

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


def init_store(data_dir: Path, env: dict[str, str] | None = None) -> str:
    """``loader store init`` (its database from ``env``'s LOADER_DATABASE_URL, if any); the
    admin token."""
    out = run_loader("store", "init", "--data-dir", str(data_dir), "--json", env=env)
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

    def rss_kib(self) -> int:
        """Resident memory now (0 once it has exited)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def _many_files() -> None:  # pragma: no cover - runs in the child, before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(
    args: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    *,
    cpu: int | None = None,
    many_files: bool = False,
) -> Proc:
    """Start a child with stderr to ``log`` and stdout to ``log`` + ``.out``. ``cpu``: pinned
    to that core (``taskset``); ``many_files``: its open-file limit raised to the hard limit
    (a server holding thousands of connections). (Both for the benchmarks, which start no
    threads before their children.)"""
    out = log.with_name(log.name + ".out")
    argv = list(args) if cpu is None else ["taskset", "-c", str(cpu), *args]
    with log.open("ab") as err, out.open("wb") as stdout:
        proc = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=err,
            stdin=stdin,
            env=env or loader_env(),
            start_new_session=True,
            preexec_fn=_many_files if many_files else None,  # noqa: PLW1509
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


def start_runner(
    log: Path, flags: Sequence[str], command: Sequence[str], env: dict[str, str] | None = None
) -> Proc:
    """``loader run FLAGS -- COMMAND`` as a child process (stderr to ``log``)."""
    return spawn([*LOADER, "run", *flags, "--", *command], log, env)


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def create_token(
    data_dir: Path, scopes: str, app: int | None = None, envs: str | None = None
) -> str:
    """``loader store token create`` on the data directory; the token it prints once."""
    args = ["store", "token", "create", "--data-dir", str(data_dir), "--scopes", scopes, "--json"]
    if app is not None:
        args += ["--app", str(app)]
    if envs is not None:
        args += ["--env", envs]
    out = run_loader(*args)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["token"])


@dataclass
class LiveStore:
    """A store process on a fixed port (so it can be killed and brought back) with one app."""

    data: Path
    port: int
    admin: str
    app: int
    proc: Proc

    @classmethod
    def start(cls, tmp_path: Path, app_name: str = "app") -> LiveStore:
        data = tmp_path / "store"
        admin = init_store(data)
        port = free_port()
        proc = start_store(data, listen=f"127.0.0.1:{port}")
        client = HttpClient(proc.url, token=admin)
        app = int(client.call("POST", "/v1/apps", {"name": app_name}).json()["id"])
        client.close()
        return cls(data, port, admin, app, proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> HttpClient:
        return HttpClient(self.url, token=self.admin)

    def put(self, name: str, value: str, env: str = "default") -> None:
        c = self.client()
        c.call(
            "POST",
            f"/v1/apps/{self.app}/environments/{env}/secrets",
            {"name": name, "value": value},
        )
        c.close()

    def token(self, *scopes: str, app: bool = True) -> str:
        return create_token(self.data, ",".join(scopes), self.app if app else None)

    def restart(self) -> None:
        self.proc.stop()
        self.proc = start_store(self.data, listen=f"127.0.0.1:{self.port}")
