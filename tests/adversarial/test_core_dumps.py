"""No core dump and no /proc window into the processes that hold keys, tokens and values: the
store, the agent, the webhook and the `loader run --watch` supervisor, each started with core
dumps allowed and a canary in its environment."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.adversarial.otheruser import dumping, needs_root, read_as_same_uid
from tests.procs import LOADER, LiveStore, Proc, init_store, loader_env, spawn, wait_for_line

pytestmark = needs_root
CANARY = "core-canary-5d1e0b"
PROCESSES = ["store", "agent", "webhook", "supervisor"]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    live = LiveStore.start(tmp_path / "upstream")
    try:
        yield live
    finally:
        live.proc.stop()


def start(which: str, work: Path, shm: Path, live: Callable[[], LiveStore]) -> Proc:
    env = loader_env(CORE_CANARY=CANARY)
    prefix = dumping(work)
    if which == "store":
        data = work / "data"
        init_store(data)
        args = ["store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"]
    elif which == "agent":
        store = live()
        env.update(
            LOADER_STORE_URL=store.url,
            LOADER_APP=str(store.app),
            LOADER_TOKEN=store.token("secrets:reveal"),
        )
        args = ["agent", "--output", str(shm / "app.env"), "--listen", "127.0.0.1:0"]
    elif which == "webhook":
        args = ["webhook", "--insecure", "--listen", "127.0.0.1:0", "--image", "x"]
        args += ["--store-url", "http://loader-store:8700"]
    else:
        env_file = work / "app.env"
        env_file.write_text("A=1\n")
        env_file.chmod(0o600)
        args = ["run", "--watch", "--from-file", str(env_file), "--"]
        args += ["sh", "-c", "echo listening on child; exec sleep 60"]
    proc = spawn([*prefix, *LOADER, *args], work / f"{which}.log", env)
    wait_for_line(proc, r"listening on (\S+)")
    return proc


def core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]  # the soft limit
    raise AssertionError("no core limit line")


def core_files(work: Path) -> list[Path] | None:
    """Core files the kernel left in ``work``; None when the system sends cores elsewhere."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        return None
    prefix = pattern.split("%")[0]
    return [p for p in work.iterdir() if p.name.startswith(prefix)]


@pytest.mark.parametrize("which", PROCESSES)
def test_no_core_dump_and_no_environ_for_same_uid(
    which: str, tmp_path: Path, shm: Path, request: pytest.FixtureRequest
) -> None:
    """1. started under `ulimit -c unlimited` by an ordinary (capability-less) root process;
    2. its core size limit is 0; 3. another ordinary process of the same uid cannot read its
    /proc/PID/environ (non-dumpable); 4. SIGSEGV kills it without leaving a core file."""
    work = tmp_path / "work"
    work.mkdir()
    proc = start(which, work, shm, lambda: request.getfixturevalue("live"))
    try:
        assert core_limit(proc.pid) == "0"
        seen = read_as_same_uid(f"/proc/{proc.pid}/environ")
        assert seen.returncode != 0 and CANARY.encode() not in seen.stdout
        assert b"Permission denied" in seen.stderr
        os.kill(proc.pid, signal.SIGSEGV)
        assert proc.proc.wait(30) == -signal.SIGSEGV
        cores = core_files(work)
        if cores is not None:
            assert cores == []
    finally:
        proc.stop(signal.SIGKILL)
