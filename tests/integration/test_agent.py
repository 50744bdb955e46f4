"""The agent as a real process against a real store process."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from loader.httpclient import HttpClient
from tests.procs import (
    LiveStore,
    Proc,
    free_port,
    loader_env,
    run_loader,
    start_agent,
    start_store,
    wait_until,
)

CANARY_A = "canary-agent-A-9d2f 'quoted' #hash = x"
CANARY_B = "canary-agent-B-77e1\nsecond line"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    live = LiveStore.start(tmp_path, "agent-app")
    live.put("A", CANARY_A)
    live.put("B", CANARY_B)
    try:
        yield live
    finally:
        live.proc.stop()


def agent_env(live: LiveStore, token: str, **extra: str) -> dict[str, str]:
    base = {"LOADER_STORE_URL": live.url, "LOADER_TOKEN": token, "LOADER_APP": str(live.app)}
    return loader_env(**{**base, **extra})


def local(agent: Proc, **headers: str) -> HttpClient:
    return HttpClient(agent.url, headers={"X-Loader-Request": "true", **headers})


SPICEPOD = """version: v1
kind: Spicepod
name: t
datasets:
  - from: postgres:x
    name: x
    params:
      pg_pass: ${ secrets:A }
      other: ${env:KEEP_ME}
      multi: ${secrets:B}
"""


def test_agent_render_follow_outage_and_recovery(
    live: LiveStore, shm: Path, tmp_path: Path
) -> None:
    """1. first render of the env file and a spicepod; 2. a change reaches both; 3. store
    killed: files byte-identical, endpoint serving, readiness reports age and the error;
    4. store back: the next change arrives."""
    template = tmp_path / "spicepod.yaml"
    template.write_text(SPICEPOD)
    env_file, pod = shm / "app.env", shm / "spicepod.yaml"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--template",
        str(template),
        "--template-output",
        str(pod),
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "debug",
        env=agent_env(live, live.token("secrets:reveal")),
    )
    try:
        # 1
        wait_until(lambda: pod.exists() and env_file.exists(), what="first render")
        assert dotenv_values(env_file) == {"A": CANARY_A, "B": CANARY_B}
        assert env_file.stat().st_mode & 0o777 == 0o600
        params = yaml.safe_load(pod.read_text())["datasets"][0]["params"]
        assert params == {"pg_pass": CANARY_A, "other": "${env:KEEP_ME}", "multi": CANARY_B}
        # 2
        live.put("A", "second: 'value'")
        wait_until(lambda: dotenv_values(env_file).get("A") == "second: 'value'", what="change")
        wait_until(lambda: "second: 'value'" in str(yaml.safe_load(pod.read_text())))
        # 3
        before = (env_file.read_bytes(), pod.read_bytes())
        live.proc.stop(signal.SIGKILL)
        endpoint = local(agent)
        wait_until(lambda: endpoint.call("GET", "/readyz").json()["last_error"], what="error")
        time.sleep(0.5)
        assert (env_file.read_bytes(), pod.read_bytes()) == before
        assert endpoint.call("GET", "/v1/secrets").json() == {"A": "second: 'value'", "B": CANARY_B}
        ready = endpoint.call("GET", "/readyz").json()
        assert ready["ready"] is True and ready["age_seconds"] > 0.3
        assert "unreachable" in ready["last_error"]
        # 4
        live.restart()
        live.put("B", "after the outage")
        wait_until(lambda: dotenv_values(env_file).get("B") == "after the outage", what="catch up")
        assert endpoint.call("GET", "/readyz").json()["last_error"] is None
        endpoint.close()
    finally:
        assert agent.stop() == 0
    logs = agent.logs() + agent.output()
    for value in (CANARY_A, CANARY_B, "second: 'value'", "after the outage", live.admin):
        assert value not in logs


def test_agent_obeys_retry_after_on_429(live: LiveStore, shm: Path, tmp_path: Path) -> None:
    """A rate-limited store (0.5 request/s per token) answers 429 + Retry-After: 2; the agent,
    asked to long-poll in tiny steps and to back off for only 50-100 ms, waits the 2 s anyway."""
    live.proc.stop()
    live.proc = start_store(
        live.data, "--rate-limit", "0.5/s", "--rate-burst", "2", listen=f"127.0.0.1:{live.port}"
    )
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        "127.0.0.1:0",
        "--wait",
        "0.05",
        env=agent_env(
            live,
            live.token("secrets:reveal"),
            LOADER_BACKOFF_INITIAL="0.05",
            LOADER_BACKOFF_MAX="0.1",
        ),
    )
    try:
        endpoint = local(agent)
        time.sleep(6.5)
        metrics = endpoint.call("GET", "/metrics").body.decode()
        endpoint.close()
    finally:
        agent.stop()
    errors = _metric(metrics, 'loader_agent_fetch_seconds_count{result="error"}')
    ok = _metric(metrics, 'loader_agent_fetch_seconds_count{result="200"}') + _metric(
        metrics, 'loader_agent_fetch_seconds_count{result="304"}'
    )
    assert errors >= 1  # it was limited
    # Each 429 says "retry in ~2 s"; ignoring it, retries every ~0.075 s would be ~80 refusals.
    assert errors <= 6 and ok <= 6, (errors, ok)
    assert (shm / "env").exists()


def _metric(text: str, key: str) -> float:
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


def test_agent_follows_token_file_rotation(live: LiveStore, shm: Path, tmp_path: Path) -> None:
    """1. agent on token T1 from a file; 2. T2 swapped in (rename, like a projected volume) and
    T1 revoked; 3. the next change still arrives."""
    token_dir = tmp_path / "tokens"
    token_dir.mkdir()
    token_file = token_dir / "token"
    first = live.token("secrets:reveal")
    token_file.write_text(first)
    env_file = shm / "env"
    env = agent_env(live, "", LOADER_TOKEN_FILE=str(token_file))
    del env["LOADER_TOKEN"]
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--listen",
        "off",
        env=env,
        wait_listening=False,
    )
    try:
        wait_until(env_file.exists, what="first render")
        second = live.token("secrets:reveal")
        staged = token_dir / ".token.new"
        staged.write_text(second + "\n")
        staged.replace(token_file)
        wait_until(lambda: "token file" in agent.logs(), what="token reload")
        out = run_loader("store", "token", "revoke", first[:15], "--data-dir", str(live.data))
        assert out.returncode == 0, out.stderr
        live.put("A", "with the rotated token")
        wait_until(lambda: dotenv_values(env_file).get("A") == "with the rotated token")
    finally:
        agent.stop()
    assert first not in agent.logs() and second not in agent.logs()


def test_agent_endpoint_refusals(live: LiveStore, shm: Path, tmp_path: Path) -> None:
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        "127.0.0.1:0",
        env=agent_env(live, live.token("secrets:reveal")),
    )
    port = int(agent.url.rsplit(":", 1)[1])
    try:
        wait_until((shm / "env").exists)

        def raw(request: str) -> tuple[int, str]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request.encode())
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.decode().partition("\r\n\r\n")
            assert "access-control" not in head.lower()
            return int(head.split()[1]), body

        def get(path: str, host: str | None, header: bool = True, extra: str = "") -> int:
            lines = [f"GET {path} HTTP/1.1"]
            if host is not None:
                lines.append(f"Host: {host}")
            if header:
                lines.append("X-Loader-Request: true")
            lines += [extra] if extra else []
            lines += ["Connection: close", "", ""]
            return raw("\r\n".join(lines))[0]

        for host in (
            "localhost",
            f"localhost:{port}",
            "127.0.0.1",
            f"127.0.0.1:{port}",
            "[::1]",
            f"[::1]:{port}",
            "LOCALHOST",
        ):
            assert get("/v1/secrets", host) == 200, host
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "",
            "localhost:x",
            "[::2]",
        ):
            assert get("/v1/secrets", host) == 403, host
        assert get("/v1/secrets", None) in (400, 403)
        assert get("/v1/secrets", "localhost", header=False) == 403
        assert get("/v1/secrets", "localhost", extra="Origin: http://evil.example") == 403
        assert get("/v1/secrets/A", "localhost") == 200
        assert get("/v1/secrets/NOPE", "localhost") == 404
        assert get("/healthz", "localhost", header=False) == 200  # probes need no header
        for path in ("/healthz", "/readyz", "/metrics", "/nope"):  # every route: the Host rule
            assert get(path, "evil.example", header=False) == 403, path
        status, _ = raw(
            "OPTIONS /v1/secrets HTTP/1.1\r\nHost: localhost\r\nOrigin: http://e\r\n"
            "Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        )
        assert status in (403, 405)
        endpoint = local(agent)
        assert endpoint.call("GET", "/v1/secrets/A").body.decode() == CANARY_A
        assert endpoint.request("POST", "/v1/secrets", {}).status == 405
        endpoint.close()
    finally:
        agent.stop()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:8701", "[::]:8701", "example.com:1"])
def test_agent_refuses_non_loopback_bind(live: LiveStore, shm: Path, listen: str) -> None:
    out = run_loader(
        "agent",
        "--output",
        str(shm / "env"),
        "--listen",
        listen,
        env=agent_env(live, "lt_000000000000_x"),
    )
    assert out.returncode == 78
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "loopback" in lines[0]


def test_agent_bad_settings_exit_78_before_any_network_call(shm: Path, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    base = loader_env(LOADER_STORE_URL=url, LOADER_TOKEN="lt_000000000000_x", LOADER_APP="1")
    cases = [
        (["--output", str(shm / "e")], {"LOADER_APP": "0"}),
        (["--output", str(shm / "e")], {"LOADER_APP": "no/such name"}),
        (["--output", str(shm / "e")], {"LOADER_FORMAT": "xml"}),
        (["--output", str(tmp_path / "on-disk.env")], {}),
        (["--output", str(shm / "missing-dir" / "e")], {}),
        ([], {}),
        (
            [
                "--output",
                str(shm / "e"),
                "--template",
                str(tmp_path / "nope.yaml"),
                "--template-output",
                str(shm / "t"),
            ],
            {},
        ),
        (["--output", str(shm / "e"), "--max-stale", "soon"], {}),
        (["--output", str(shm / "e")], {"LOADER_TOKEN": "", "LOADER_TOKEN_FILE": "/nonexistent"}),
        (["--output", str(shm / "e")], {"LOADER_STORE_URL": "ftp://x"}),
    ]
    for args, env in cases:
        out = run_loader("agent", *args, env={**base, **env})
        assert out.returncode == 78, (args, env, out.stderr)
        assert len(out.stderr.decode().strip().splitlines()) == 1, out.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()


def test_agent_allow_disk(live: LiveStore, tmp_path: Path) -> None:
    out = tmp_path / "disk.env"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(out),
        "--listen",
        "off",
        env=agent_env(live, live.token("secrets:reveal"), LOADER_ALLOW_DISK="true"),
        wait_listening=False,
    )
    try:
        wait_until(out.exists)
    finally:
        agent.stop()


def test_render_once_exit_codes(live: LiveStore, shm: Path, tmp_path: Path) -> None:
    token = live.token("secrets:reveal")
    ok = run_loader("render", "--once", "--output", str(shm / "env"), env=agent_env(live, token))
    assert ok.returncode == 0, ok.stderr
    assert dotenv_values(shm / "env") == {"A": CANARY_A, "B": CANARY_B}
    assert CANARY_A not in (ok.stdout + ok.stderr).decode()

    refused = run_loader(
        "render",
        "--once",
        "--output",
        str(shm / "env2"),
        env=agent_env(live, live.admin + "tampered"),
    )
    assert refused.returncode == 77
    assert live.admin not in refused.stderr.decode()
    assert not (shm / "env2").exists()

    wrong_app = run_loader(
        "render",
        "--once",
        "--output",
        str(shm / "env3"),
        env=agent_env(
            live, live.token("secrets:reveal", app=False), LOADER_APP=str(live.app + 1000)
        ),
    )
    assert wrong_app.returncode == 66

    gone = agent_env(live, token, LOADER_STORE_URL=f"http://127.0.0.1:{free_port()}")
    unreachable = run_loader(
        "render", "--once", "--timeout", "1.5", "--output", str(shm / "env4"), env=gone
    )
    assert unreachable.returncode == 69
    assert "unreachable" in unreachable.stderr.decode()
    assert token not in unreachable.stderr.decode()

    template = tmp_path / "t.yaml"
    template.write_text("k: ${secrets:MISSING}\n")
    missing = run_loader(
        "render",
        "--once",
        "--template",
        str(template),
        "--template-output",
        str(shm / "t.yaml"),
        env=agent_env(live, token),
    )
    assert missing.returncode == 65
    assert "MISSING" in missing.stderr.decode()


def test_render_once_refusal_is_one_line_naming_every_secret(live: LiveStore, shm: Path) -> None:
    """A render that cannot write names every secret it cannot carry and the reader that would
    misread it, once (no log line before the error line), exits 65 and writes nothing."""
    live.put("C", "canary-C-ends-in-a-backslash\\")
    live.put("D", "canary-D-${HOME}")
    token = live.token("secrets:reveal")
    out = run_loader("render", "--once", "--output", str(shm / "env"), env=agent_env(live, token))
    assert out.returncode == 65
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("loader: ") and "cannot write dotenv: 2 secrets C (" in lines[0]
    assert "D (it has a ${...} reference; python-dotenv would misread it)" in lines[0]
    assert "the shell, docker or json format carries them" in lines[0]
    assert "canary" not in out.stderr.decode() + out.stdout.decode()
    assert not (shm / "env").exists()


def test_agent_on_change_template_reload_and_last_good(
    live: LiveStore, shm: Path, tmp_path: Path
) -> None:
    """1. --on-change runs after a write, without LOADER_TOKEN in its environment; 2. editing
    the template re-renders; 3. a value the format cannot carry keeps the last good file and is
    reported by name in /readyz."""
    marker = tmp_path / "changes.log"
    template = tmp_path / "t.txt"
    template.write_text("a=${secrets:A}\n")
    env_file = shm / "docker.env"
    live.put("B", "one line")
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(env_file),
        "--format",
        "docker",
        "--template",
        str(template),
        "--template-output",
        str(shm / "t.txt"),
        "--listen",
        "127.0.0.1:0",
        "--on-change",
        f"env >> {marker}; echo --- >> {marker}",
        env=agent_env(live, live.token("secrets:reveal")),
    )
    try:
        wait_until(lambda: marker.exists() and "---" in marker.read_text(), what="on-change")
        assert "LOADER_TOKEN=" not in marker.read_text()
        template.write_text("b=${secrets:B}\n")
        wait_until(lambda: (shm / "t.txt").read_text() == "b=one line\n", what="template reload")
        before = env_file.read_bytes()
        live.put("B", "two\nlines")
        endpoint = local(agent)
        wait_until(lambda: endpoint.call("GET", "/readyz").json()["last_error"], what="error")
        err = endpoint.call("GET", "/readyz").json()["last_error"]
        assert "secret B" in err and "two" not in err
        assert env_file.read_bytes() == before
        endpoint.close()
    finally:
        agent.stop()


def test_agent_max_stale_turns_readiness_red(live: LiveStore, shm: Path, tmp_path: Path) -> None:
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        "127.0.0.1:0",
        "--max-stale",
        "1s",
        env=agent_env(live, live.token("secrets:reveal")),
    )
    try:
        endpoint = local(agent)
        wait_until(lambda: endpoint.request("GET", "/readyz").status == 200, what="ready")
        live.proc.stop(signal.SIGKILL)
        wait_until(lambda: endpoint.request("GET", "/readyz").status == 503, what="stale")
        body = endpoint.request("GET", "/readyz").json()
        assert body["stale"] is True and body["ready"] is False
        assert endpoint.call("GET", "/v1/secrets").json()["A"] == CANARY_A  # still serving
        endpoint.close()
    finally:
        agent.stop()


def test_agent_unix_socket_long_poll_and_clean_exit(
    live: LiveStore, shm: Path, tmp_path: Path
) -> None:
    sock = shm / "agent.sock"
    agent = start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "env"),
        "--listen",
        f"unix:{sock}",
        env=agent_env(live, live.token("secrets:reveal")),
    )
    try:
        assert sock.stat().st_mode & 0o777 == 0o600
        endpoint = HttpClient(f"unix:{sock}", headers={"X-Loader-Request": "true"}, timeout=70)
        wait_until(lambda: endpoint.request("GET", "/readyz").status == 200)
        first = endpoint.call("GET", "/v1/secrets")
        etag = first.headers["etag"]
        held = endpoint.request("GET", "/v1/secrets?wait=0.3", headers={"If-None-Match": etag})
        assert held.status == 304
        writer = threading.Timer(0.3, live.put, ("A", "arrived during the wait"))
        writer.start()
        changed = endpoint.request("GET", "/v1/secrets?wait=60", headers={"If-None-Match": etag})
        writer.join()
        assert changed.status == 200
        assert changed.json()["A"] == "arrived during the wait"
        endpoint.close()
    finally:
        assert agent.stop(signal.SIGTERM) == 0
    assert not sock.exists()


def test_agent_help_lists_every_setting() -> None:
    out = run_loader("agent", "--help")
    assert out.returncode == 0
    for flag in (
        "--store-url",
        "--token-file",
        "--output",
        "--format",
        "--template",
        "--template-output",
        "--listen",
        "--allow-disk",
        "--on-change",
        "--max-stale",
    ):
        assert flag in out.stdout.decode()
