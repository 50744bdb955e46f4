"""The image's HEALTHCHECK (``python -m loader.healthcheck PID``) against real processes of each
role, found from their own command lines and environments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loader.healthcheck import url_for
from tests.procs import LOADER, free_port, init_store, loader_env, spawn, start_store, wait_for_line


def healthcheck(pid: int, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loader.healthcheck", str(pid)],
        env=loader_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_finds_the_store_by_flag_or_variable(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    init_store(tmp_path / "other")
    by_flag = start_store(data, listen=f"127.0.0.1:{free_port()}")
    port = free_port()
    by_env = spawn(
        [*LOADER, "store", "serve", "--data-dir", str(tmp_path / "other")],
        tmp_path / "other.log",
        loader_env(LOADER_LISTEN=f"127.0.0.1:{port}"),
    )
    try:
        wait_for_line(by_env, r"listening on (\S+)")
        assert healthcheck(by_flag.pid).returncode == 0
        assert healthcheck(by_env.pid).returncode == 0
        closed = f"http://127.0.0.1:{free_port()}/v1/health"
        down = healthcheck(by_flag.pid, LOADER_HEALTHCHECK_URL=closed)
        assert down.returncode == 1
        assert down.stderr == f"healthcheck: {closed}: URLError\n"
    finally:
        by_flag.stop()
        by_env.stop()


def test_healthcheck_finds_the_agent_and_the_webhook(tmp_path: Path, shm: Path) -> None:
    agent_port, webhook_port = free_port(), free_port()
    agent = spawn(
        [*LOADER, "agent"],
        tmp_path / "agent.log",
        loader_env(
            LOADER_STORE_URL=f"http://127.0.0.1:{free_port()}",
            LOADER_TOKEN="lt_000000000000_unused",
            LOADER_APP="1",
            LOADER_OUTPUT=str(shm / "app.env"),
            LOADER_LISTEN=f"127.0.0.1:{agent_port}",
        ),
    )
    webhook = spawn(
        [*LOADER, "webhook", "--insecure", "--listen", f"127.0.0.1:{webhook_port}"],
        tmp_path / "webhook.log",
        loader_env(LOADER_WEBHOOK_IMAGE="img", LOADER_WEBHOOK_STORE_URL="http://store:8700"),
    )
    try:
        for proc in (agent, webhook):
            wait_for_line(proc, r"listening on (\S+)")
            assert healthcheck(proc.pid).returncode == 0, proc.logs()
    finally:
        agent.stop()
        webhook.stop()
    assert healthcheck(agent.pid).returncode == 1  # gone


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        (["loader", "store", "serve"], {}, "http://127.0.0.1:8700/v1/health"),
        (
            ["loader", "store", "serve", "--listen=0.0.0.0:9000", "--tls-cert", "c.pem"],
            {},
            "https://127.0.0.1:9000/v1/health",
        ),
        (["loader", "webhook"], {}, "https://127.0.0.1:8443/healthz"),
        (["loader", "agent"], {"LOADER_LISTEN": "[::]:8800"}, "http://[::1]:8800/healthz"),
        (["loader", "agent"], {"LOADER_LISTEN": "unix:/run/a.sock"}, None),
        (["loader", "agent"], {"LOADER_HEALTHCHECK_URL": "http://x/y"}, "http://x/y"),
    ],
)
def test_healthcheck_url(argv: list[str], env: dict[str, str], url: str | None) -> None:
    assert url_for(argv, env) == url
