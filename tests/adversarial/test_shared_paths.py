"""Shared directories and sockets: another uid plants files, links and sockets where the agent
writes and the runner reads. Each is refused with one line naming the path and the reason
(exit 78), nothing is read from it or handed to the app, and nothing hangs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest

from loader.errors import ConfigError
from loader.runner import http
from tests.adversarial.otheruser import OTHER, as_other, impostor, needs_root, shared_dir
from tests.procs import LOADER, LiveStore, loader_env, run_loader, start_agent

pytestmark = needs_root
NOWHERE = "http://127.0.0.1:9"  # the refusals come before any network call
PLANTED = "LD_PRELOAD=/nonexistent/evil.so\nPLANTED=yes\n"
APP = ["--", "sh", "-c", 'echo "app ran with PLANTED=$PLANTED"']
# The old code read a symlink to /dev/zero until memory ran out: cap it, not the machine.
CAPPED = ["sh", "-c", 'ulimit -v 1500000 && exec "$@"', "sh"]


def assert_refused(out: object, path: Path | str, reason: str) -> None:
    rc, stdout, stderr = out.returncode, out.stdout.decode(), out.stderr.decode()  # type: ignore[attr-defined]
    assert rc == 78, (rc, stdout, stderr)
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert str(path) in stderr and reason in stderr, stderr
    assert "app ran" not in stdout


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("lt_not-a-real-token\n")
    return path


def agent(command: str, token_file: Path, *args: str) -> object:
    """``loader agent`` or ``loader render --once`` against nowhere (the old code would retry
    until the timeout: 69 for render, a timeout for the daemon)."""
    words = ["render", "--once", "--timeout", "2s"] if command == "render" else ["agent"]
    if command == "agent" and "--listen" not in args:
        words += ["--listen", "off"]
    return run_loader(
        *words,
        "--store-url",
        NOWHERE,
        "--app",
        "1",
        "--token-file",
        str(token_file),
        *args,
        timeout=30,
    )


# -- files planted by another uid ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["agent", "render"])
def test_agent_refuses_an_env_file_another_uid_planted(token_file: Path, command: str) -> None:
    """1. in a shared sticky directory (like /dev/shm) another uid creates app.env first, with
    LD_PRELOAD; 2. the agent refuses it at start (exit 78, one line, no traceback); 3. the
    attacker's file is left as it was, neither read nor replaced."""
    with shared_dir(0o1777) as shared:
        target = shared / "app.env"
        as_other(f"printf '{PLANTED}' > {target}")
        out = agent(command, token_file, "--output", str(target))
        assert_refused(out, target, f"owned by uid {OTHER.pw_uid}")
        assert target.read_text() == PLANTED and target.stat().st_uid == OTHER.pw_uid


def test_runner_refuses_an_env_file_or_link_another_uid_planted(tmp_path: Path) -> None:
    """`loader run --from-file` reads neither another uid's file nor our file through another
    uid's symlink; the app is not started."""
    with shared_dir(0o1777) as shared:
        planted = shared / "app.env"
        as_other(f"printf '{PLANTED}' > {planted}")
        out = run_loader("run", "--from-file", str(planted), *APP)
        assert_refused(out, planted, f"owned by uid {OTHER.pw_uid}")

        ours = shared / "ours.env"
        ours.write_text(PLANTED)
        ours.chmod(0o600)
        link = shared / "link.env"
        as_other(f"ln -s {ours} {link}")
        out = run_loader("run", "--from-file", str(link), *APP)
        assert_refused(out, link, f"symbolic link owned by uid {OTHER.pw_uid}")


def test_token_and_template_another_uid_planted_are_refused(shm: Path, token_file: Path) -> None:
    """A token (the attacker's app's secrets would be rendered) or a template (the attacker's
    datasets would receive our secrets) owned by another uid is refused by agent and runner."""
    with shared_dir(0o1777) as shared:
        token = shared / "token"
        template = shared / "spicepod.yaml"
        as_other(f"echo lt_attackers-token > {token}; echo 'kind: Spicepod' > {template}")
        out = run_loader(
            "run", "--store-url", NOWHERE, "--app", "1", "--token-file", str(token), *APP
        )
        assert_refused(out, token, f"owned by uid {OTHER.pw_uid}")
        out = agent("render", token, "--output", str(shm / "app.env"))
        assert_refused(out, token, f"owned by uid {OTHER.pw_uid}")
        out = agent(
            "render",
            token_file,
            "--template",
            str(template),
            "--template-output",
            str(shm / "spicepod.yaml"),
        )
        assert_refused(out, template, f"owned by uid {OTHER.pw_uid}")
        assert not (shm / "app.env").exists() and not (shm / "spicepod.yaml").exists()


def test_a_directory_others_can_write_is_refused(token_file: Path) -> None:
    """World-writable and not sticky: anyone could swap the file between renders, so neither
    the agent writes there nor the runner reads from there (even a file of ours)."""
    with shared_dir(0o777) as shared:
        target = shared / "app.env"
        out = agent("render", token_file, "--output", str(target))
        assert_refused(out, shared, "writable by other users and not sticky")
        assert not target.exists()
        target.write_text("A=1\n")
        target.chmod(0o600)
        out = run_loader("run", "--from-file", str(target), *APP)
        assert_refused(out, shared, "writable by other users and not sticky")


# -- things that are not regular files ----------------------------------------------------------


def test_fifo_and_device_outputs_neither_hang_nor_flood(shm: Path, token_file: Path) -> None:
    """A FIFO at the output (the old agent hung at start) and a symlink to /dev/zero (the old
    agent read gigabytes) are refused at once; so is the runner's --from-file and a template."""
    fifo = shm / "app.env"
    os.mkfifo(fifo)
    out = agent("render", token_file, "--output", str(fifo))
    assert_refused(out, fifo, "is a FIFO")
    out = run_loader("run", "--from-file", str(fifo), *APP, timeout=30)
    assert_refused(out, fifo, "is a FIFO")
    out = agent(
        "render",
        token_file,
        "--template",
        str(fifo),
        "--template-output",
        str(shm / "spicepod.yaml"),
    )
    assert_refused(out, fifo, "is a FIFO")
    fifo.unlink()

    zero = shm / "app.env"
    zero.symlink_to("/dev/zero")
    out = run_loader_capped(
        "render", "--once", "--timeout", "2s", "--store-url", NOWHERE, "--app", "1",
        "--token-file", str(token_file), "--output", str(zero),
    )  # fmt: skip
    assert_refused(out, zero, "is a symbolic link")
    out = run_loader_capped("run", "--from-file", str(zero), *APP)
    assert_refused(out, zero, "is a character device")


def run_loader_capped(*args: str) -> object:
    return subprocess.run(
        [*CAPPED, *LOADER, *args], env=loader_env(), capture_output=True, timeout=60, check=False
    )


# -- sockets ------------------------------------------------------------------------------------

IMPOSTOR_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n"
    b"export PLANTED='yes'\n\n\n\n"
)


def test_agent_refuses_a_socket_another_uid_bound_first(token_file: Path) -> None:
    """Another uid binds agent.sock before the agent: the agent refuses to start (the old one
    removed it and served, or crashed with a traceback), and the impostor keeps its socket."""
    with shared_dir(0o1777) as shared:
        sock = shared / "agent.sock"
        with impostor(sock, IMPOSTOR_ANSWER):
            out = agent(
                "agent",
                token_file,
                "--output",
                str(shared / "app.env"),
                "--listen",
                f"unix:{sock}",
            )
            assert_refused(out, sock, f"owned by uid {OTHER.pw_uid}")
            assert sock.stat().st_uid == OTHER.pw_uid


def test_runner_refuses_an_impostor_on_the_agent_socket() -> None:
    """The runner checks who serves the socket (SO_PEERCRED): the impostor's answer is not
    used, the app not started; the --watch follower's async client refuses it too."""
    with shared_dir(0o1777) as shared:
        sock = shared / "agent.sock"
        with impostor(sock, IMPOSTOR_ANSWER):
            out = run_loader(
                "run", *APP, env=loader_env(LOADER_AGENT_URL=f"unix:{sock}"), timeout=30
            )
            assert_refused(out, sock, f"runs as uid {OTHER.pw_uid}")
            with pytest.raises(ConfigError, match=f"runs as uid {OTHER.pw_uid}"):
                asyncio.run(http.aget(f"unix:{sock}", "/v1/secrets?format=shell", {}, 10))


# -- what is allowed ------------------------------------------------------------------------------


def test_sticky_root_owned_directory_works_end_to_end(tmp_path: Path) -> None:
    """The shape of /dev/shm and of a Kubernetes memory emptyDir (root-owned, 1777): 1. the init
    container renders, 2. renders again over its own file, 3. the sidecar binds its socket there
    (replacing its own stale one) and serves, 4. the runner reads the file and the socket."""
    live = LiveStore.start(tmp_path)
    try:
        live.put("A", "alpha")
        token = tmp_path / "agent-token"
        token.write_text(live.token("secrets:reveal") + "\n")
        with shared_dir(0o1777) as shared:
            target, sock = shared / "app.env", shared / "agent.sock"
            args = ["--store-url", live.url, "--app", str(live.app), "--token-file", str(token)]
            for _ in range(2):
                out = run_loader("render", "--once", *args, "--output", str(target))
                assert out.returncode == 0, out.stderr
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(str(sock))
            stale.close()
            sidecar = start_agent(
                tmp_path / "agent.log", *args, "--output", str(target), "--listen", f"unix:{sock}"
            )
            try:
                show = ["--", "sh", "-c", "echo A=$A"]
                for source in (["--from-file", str(target)], ["--agent-url", f"unix:{sock}"]):
                    out = run_loader("run", *source, *show)
                    assert out.returncode == 0, out.stderr
                    assert out.stdout.decode().strip() == "A=alpha"
            finally:
                sidecar.stop()
            assert not sock.exists()  # removed at shutdown: it was ours
    finally:
        live.proc.stop()
