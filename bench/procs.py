"""Start the real processes the benchmarks measure (from the wheel-installed bench venv)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from loader.httpclient import HttpClient  # noqa: E402


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_fd_limit() -> None:
    _raise_fd_limit()


class Process:
    def __init__(
        self, argv: Sequence[str], env: dict[str, str], log: Path, cpu: int | None = None
    ) -> None:
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        self.log = log
        self.out = log.with_suffix(".out")
        with log.open("ab") as err, self.out.open("wb") as out:
            # The benchmarks start no threads before their processes.
            self.proc = subprocess.Popen(
                list(argv),
                env=env,
                stdout=out,
                stderr=err,
                preexec_fn=_raise_fd_limit,  # noqa: PLW1509
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, marker: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.out.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{marker!r} not seen: {self.log.read_text()[-2000:]}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADER_")}
    env.update(extra)
    return env


class Stack:
    """A store (SQLite by default, or PostgreSQL replicas) and helpers to fill it."""

    def __init__(
        self,
        bin_dir: Path,
        work: Path,
        database_url: str | None = None,
        replicas: int = 1,
        cpu: int | None = None,
        extra: Sequence[str] = (),
        src: Path | None = None,
    ) -> None:
        """``src``: run the loader of that source tree (``python -m loader`` with it on
        PYTHONPATH) instead of the one installed in ``bin_dir`` -- to measure another commit."""
        self.bin_dir = bin_dir
        self.loader = [str(bin_dir / "loader")]
        self.work = work
        self.data = work / "store"
        env = clean_env(**({"LOADER_DATABASE_URL": database_url} if database_url else {}))
        if src is not None:
            self.loader = [str(bin_dir / "python"), "-m", "loader"]
            env["PYTHONPATH"] = str(src)
        self.env = env
        init = subprocess.run(
            [*self.loader, "store", "init", "--data-dir", str(self.data), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.admin = json.loads(init.stdout)["admin_token"]
        self.stores = []
        self.urls = []
        for i in range(replicas):
            p = Process(
                [
                    *self.loader,
                    "store",
                    "serve",
                    "--data-dir",
                    str(self.data),
                    "--listen",
                    "127.0.0.1:0",
                    *extra,
                ],
                env,
                work / f"store{i}.log",
                cpu,
            )
            self.urls.append(p.wait_line("listening on").split()[-1])
            self.stores.append(p)
        self.url = self.urls[0]

    def client(self, replica: int = 0) -> HttpClient:
        return HttpClient(self.urls[replica], token=self.admin)

    def app(self, name: str, secrets: dict[str, str]) -> int:
        c = self.client()
        app = int(c.call("POST", "/v1/apps", {"name": name}).json()["id"])
        for k, v in secrets.items():
            c.call("POST", f"/v1/apps/{app}/secrets", {"name": k, "value": v})
        c.close()
        return app

    def agent(
        self,
        app: int,
        output: Path,
        listen: str = "127.0.0.1:0",
        replica: int = 0,
        cpu: int | None = None,
        name: str = "agent",
        template: Path | None = None,
        template_output: Path | None = None,
    ) -> tuple[Process, str]:
        env = clean_env(
            LOADER_STORE_URL=self.urls[replica], LOADER_TOKEN=self.admin, LOADER_APP=str(app)
        )
        if template is not None and template_output is not None:
            env.update(LOADER_TEMPLATE=str(template), LOADER_TEMPLATE_OUTPUT=str(template_output))
        if "PYTHONPATH" in self.env:
            env["PYTHONPATH"] = self.env["PYTHONPATH"]
        p = Process(
            [*self.loader, "agent", "--output", str(output), "--listen", listen],
            env,
            self.work / f"{name}.log",
            cpu,
        )
        url = p.wait_line("listening on").split()[-1] if listen != "off" else ""
        deadline = time.monotonic() + 30
        while not output.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(p.log.read_text()[-2000:])
            time.sleep(0.01)
        return p, url

    def stop(self) -> None:
        for s in self.stores:
            s.stop()
