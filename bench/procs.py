"""The stack the benchmarks measure: a store (SQLite, or PostgreSQL replicas) and its agents,
started from the wheel-installed bench venv (or another source tree) with the test suite's
process helpers (:mod:`tests.procs`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.procs import Proc, loader_env, spawn, wait_for_line

from loader.httpclient import HttpClient

LISTENING = r"listening on (\S+)"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system) the processes ``pids`` have used so far (gone ones: 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def start_server(
    argv: Sequence[str], env: dict[str, str], log: Path, cpu: int | None = None
) -> Proc:
    """A benchmarked server: pinned to ``cpu`` when given, with room for many connections."""
    return spawn(argv, log, env, cpu=cpu, many_files=True)


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
        env = loader_env(**({"LOADER_DATABASE_URL": database_url} if database_url else {}))
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
        self.stores: list[Proc] = []
        self.urls: list[str] = []
        for i in range(replicas):
            argv = [*self.loader, "store", "serve", "--data-dir", str(self.data)]
            p = start_server(
                [*argv, "--listen", "127.0.0.1:0", *extra], env, work / f"store{i}.log", cpu
            )
            self.urls.append(wait_for_line(p, LISTENING))
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
    ) -> tuple[Proc, str]:
        env = loader_env(
            LOADER_STORE_URL=self.urls[replica], LOADER_TOKEN=self.admin, LOADER_APP=str(app)
        )
        if template is not None and template_output is not None:
            env.update(LOADER_TEMPLATE=str(template), LOADER_TEMPLATE_OUTPUT=str(template_output))
        if "PYTHONPATH" in self.env:
            env["PYTHONPATH"] = self.env["PYTHONPATH"]
        p = start_server(
            [*self.loader, "agent", "--output", str(output), "--listen", listen],
            env,
            self.work / f"{name}.log",
            cpu,
        )
        url = wait_for_line(p, LISTENING) if listen != "off" else ""
        deadline = time.monotonic() + 30
        while not output.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(p.logs()[-2000:])
            time.sleep(0.01)
        return p, url

    def stop(self) -> None:
        for s in self.stores:
            s.stop()
