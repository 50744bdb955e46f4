"""Outages, refusals and slow clients, with real processes."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from loader.httpclient import HttpClient
from tests.procs import (
    LOADER,
    LiveStore,
    free_port,
    loader_env,
    spawn,
    start_agent,
    wait_until,
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    store = LiveStore.start(tmp_path, "outage")
    store.put("A", "first")
    try:
        yield store
    finally:
        store.proc.stop()


CHILD = (
    "import os, sys, time\n"
    "open(sys.argv[1], 'a').write(f\"{os.getpid()} {os.environ.get('A')}\\n\")\n"
    "time.sleep(3600)\n"
)


def test_outage_keeps_files_endpoint_and_child_then_recovers(
    live: LiveStore, tmp_path: Path, shm: Path
) -> None:
    """1. store + agent + `run --watch` child, all live; 2. the store goes down: files stay
    byte-identical, the endpoint serves, /readyz reports the age growing and the error, the
    child keeps running; 3. the store comes back: the next change reaches file and child."""
    reveal = live.token("secrets:reveal")
    env = loader_env(LOADER_STORE_URL=live.url, LOADER_TOKEN=reveal, LOADER_APP=str(live.app))
    template = tmp_path / "t.yaml"
    template.write_text("a: ${secrets:A}\n")
    env_file, rendered = shm / "env", shm / "t.yaml"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--template",
        str(template),
        "--template-output",
        str(rendered),
        "--listen",
        "127.0.0.1:0",
        env=env,
    )
    log = tmp_path / "child.log"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    runner = spawn(
        [
            *LOADER,
            "run",
            "--watch",
            "--debounce",
            "0.05",
            "--",
            sys.executable,
            str(script),
            str(log),
        ],
        tmp_path / "runner.log",
        env=loader_env(LOADER_AGENT_URL=agent.url),
    )
    endpoint = HttpClient(agent.url, headers={"X-Loader-Request": "true"})
    try:
        wait_until(lambda: log.exists() and "first" in log.read_text(), what="child")
        child_pid = log.read_text().split()[0]
        before = (env_file.read_bytes(), rendered.read_bytes())
        live.proc.stop(signal.SIGKILL)
        wait_until(lambda: endpoint.call("GET", "/readyz").json()["last_error"], what="error")
        first_age = endpoint.call("GET", "/readyz").json()["age_seconds"]
        time.sleep(1.0)
        ready = endpoint.call("GET", "/readyz").json()
        assert ready["age_seconds"] > first_age and "unreachable" in ready["last_error"]
        assert (env_file.read_bytes(), rendered.read_bytes()) == before
        assert endpoint.call("GET", "/v1/secrets").json() == {"A": "first"}
        assert Path(f"/proc/{child_pid}").exists()
        assert log.read_text().count("\n") == 1

        live.restart()
        live.put("A", "after the outage")
        wait_until(lambda: "after the outage" in env_file.read_text(), what="file catches up")
        wait_until(lambda: "after the outage" in log.read_text(), what="child restarted")
        assert endpoint.call("GET", "/readyz").json()["last_error"] is None
    finally:
        endpoint.close()
        runner.stop()
        agent.stop()


def test_agent_follows_a_returning_store_at_once_despite_a_long_backoff(
    live: LiveStore, tmp_path: Path, shm: Path
) -> None:
    """1. an agent whose backoff starts at 20 s, holding 30 s long-polls; 2. the store is away
    long enough for several refused attempts; 3. it comes back: refusals were retried within a
    second, so the agent's first request (one that does not wait: a 304) lands at once, and
    /readyz clears the error and the data's age without waiting out a long-poll; 4. a change
    reaches the file; 5. this holds for a second outage too."""
    env_file = shm / "env"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--listen",
        "127.0.0.1:0",
        "--wait",
        "30",
        env=loader_env(
            LOADER_STORE_URL=live.url,
            LOADER_TOKEN=live.token("secrets:reveal"),
            LOADER_APP=str(live.app),
            LOADER_BACKOFF_INITIAL="20",
            LOADER_BACKOFF_MAX="60",
        ),
    )
    endpoint = HttpClient(agent.url, headers={"X-Loader-Request": "true"})
    try:
        wait_until(env_file.exists, what="first render")
        for outage in (1, 2):
            live.proc.stop()
            wait_until(lambda: endpoint.call("GET", "/readyz").json()["last_error"], what="error")
            time.sleep(1.5)
            stale_age = endpoint.call("GET", "/readyz").json()["age_seconds"]
            live.restart()
            wait_until(
                lambda: endpoint.call("GET", "/readyz").json()["last_error"] is None,
                timeout=10,
                what=f"/readyz clear after outage {outage} (not after a 10-20 s backoff step)",
            )
            assert endpoint.call("GET", "/readyz").json()["age_seconds"] < stale_age
            live.put("A", f"after outage {outage}")
            wait_until(lambda o=outage: f"after outage {o}" in env_file.read_text(), timeout=10)
        assert "retrying" in agent.logs() and "following again after" in agent.logs()
    finally:
        endpoint.close()
        agent.stop()


class FaultProxy:
    """A real HTTP proxy in front of the store that can answer 429/503 with Retry-After."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.counts: dict[str, int] = {"pass": 0, "429": 0, "503": 0}
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        self.counts[mode] += 1
        if mode != "pass":
            return web.json_response(
                {"error": "injected fault", "code": "rate_limited" if mode == "429" else "x"},
                status=int(mode),
                headers={"Retry-After": "2"},
            )
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.session.request(
            request.method,
            self.upstream + str(request.rel_url),
            headers=headers,
            data=await request.read(),
        ) as up:
            body = await up.read()
            out = {
                k: v
                for k, v in up.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=up.status, body=body, headers=out)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self.session = aiohttp.ClientSession()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await asyncio.Event().wait()

        self._loop.run_until_complete(main())

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.mark.parametrize("status", ["503", "429"])
def test_agent_obeys_retry_after_from_a_faulty_store(
    live: LiveStore, tmp_path: Path, shm: Path, status: str
) -> None:
    reveal = live.token("secrets:reveal")
    proxy = FaultProxy(live.url).start()
    env_file = shm / "env"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--listen",
        "off",
        "--wait",
        "0.2",
        wait_listening=False,
        env=loader_env(
            LOADER_STORE_URL=proxy.url,
            LOADER_TOKEN=reveal,
            LOADER_APP=str(live.app),
            LOADER_BACKOFF_INITIAL="0.05",
            LOADER_BACKOFF_MAX="0.1",
        ),
    )
    try:
        wait_until(env_file.exists, what="first render through the proxy")
        proxy.mode = status
        time.sleep(5.0)
        proxy.mode = "pass"
        refused = proxy.counts[status]
        # Retry-After: 2 s allows ~3 attempts in 5 s; ignoring it, ~0.075 s apart, ~65.
        assert 1 <= refused <= 4, proxy.counts
        live.put("A", f"after {status}")
        wait_until(lambda: f"after {status}" in env_file.read_text(), what="recovery")
    finally:
        agent.stop()


def _slowloris(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        socks.append(s)
    return socks


def test_slow_clients_do_not_starve_others(live: LiveStore, tmp_path: Path, shm: Path) -> None:
    reveal = live.token("secrets:reveal")
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        "127.0.0.1:0",
        env=loader_env(LOADER_STORE_URL=live.url, LOADER_TOKEN=reveal, LOADER_APP=str(live.app)),
    )
    agent_port = int(agent.url.rsplit(":", 1)[1])
    # The agent serves nothing before its first render: wait for it, then starve it.
    wait_until((shm / "env").exists, what="first render")
    slow = _slowloris(live.port, 150) + _slowloris(agent_port, 150)
    try:
        for _ in range(3):  # keep trickling header bytes, never finishing
            for s in slow:
                s.sendall(b"a")
            store = HttpClient(live.url, token=live.admin, timeout=5)
            assert store.call("GET", f"/v1/apps/{live.app}/secrets").status == 200
            store.close()
            local = HttpClient(agent.url, headers={"X-Loader-Request": "true"}, timeout=5)
            assert local.call("GET", "/v1/secrets").json() == {"A": "first"}
            local.close()
            time.sleep(0.3)
    finally:
        for s in slow:
            s.close()
        agent.stop()
