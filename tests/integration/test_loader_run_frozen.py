"""The standalone ``loader-run`` (scripts/build-loader-run freezes it with PyInstaller; .ci/run
builds it once and this module reuses that build): it runs where there is no Python at all,
reads 100 secrets from a real agent over loopback TCP (as the webhook wires it) or from the
store, execs or supervises its command, and leaves nothing of its own in the command's
environment."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tools
from tests.procs import LiveStore, Proc, free_port, loader_env, spawn, start_agent, wait_until

ROOT = Path(__file__).resolve().parents[2]
CANARY = "frozen-canary-9b2e: `it's` $HOME #x"
# What the child may use; python3 is not among them (checked).
TOOLS = ("sh", "cat", "env", "sleep", "mv")


@pytest.fixture(scope="module")
def loader_run() -> Path:
    tools.require(importlib.util.find_spec("PyInstaller"), "PyInstaller (the dev extra)")
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-loader-run"), sys.executable],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return Path(out.stdout.strip().splitlines()[-1]).resolve()


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Nothing but a PATH of a few shell tools, and a Python environment that would break any
    interpreter that looked at it."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, tool
            (bin_dir / tool).symlink_to(found)
    assert shutil.which("python3", path=str(bin_dir)) is None
    assert shutil.which("python", path=str(bin_dir)) is None
    return {
        "PATH": str(bin_dir),
        "PYTHONHOME": "/nonexistent",
        "PYTHONPATH": "/nonexistent",
        **extra,
    }


def loopback_agent(tmp_path: Path, shm: Path, store: LiveStore, port: int) -> Proc:
    """A real agent of ``store``'s app on 127.0.0.1:``port``, as the webhook injects it."""
    return start_agent(
        tmp_path / "agent.log",
        "--output",
        str(shm / "app.env"),
        "--listen",
        f"127.0.0.1:{port}",
        env=loader_env(
            LOADER_STORE_URL=store.url,
            LOADER_TOKEN=store.token("secrets:reveal"),
            LOADER_APP=str(store.app),
            LOADER_FORMAT="shell",  # the canary's $ is beyond what dotenv readers agree on
        ),
    )


def run_frozen(
    loader_run: Path, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``loader-run ARGS`` in :func:`clean_env`, to its end."""
    return subprocess.run(
        [str(loader_run), *args],
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CHILD = """#!/bin/sh
# Record the environment and which libraries the parent (loader-run --watch) has mapped.
out=$1
env > "$out/env.$$.tmp"
cat /proc/$PPID/maps > "$out/maps.$$"
mv "$out/env.$$.tmp" "$out/env.$$"
trap 'exit 0' TERM
sleep 600 &
wait
"""


def _runs(out: Path) -> list[dict[str, str]]:
    runs = []
    for path in sorted(out.glob("env.*"), key=lambda p: p.stat().st_mtime_ns):
        if path.name.endswith(".tmp"):
            continue
        lines = path.read_text().splitlines()
        runs.append(dict(line.split("=", 1) for line in lines if "=" in line))
    return runs


def test_frozen_loader_run_watches_an_agent_without_python(
    tmp_path: Path, shm: Path, loader_run: Path
) -> None:
    """A real store (100 secrets) and agent on loopback TCP; ``loader-run --watch`` in a clean
    environment with no python3 on PATH runs the child with every secret, restarts it when a
    value changes in the store (three times), and passes SIGTERM on; the child's environment
    has no trace of the bootloader (LD_LIBRARY_PATH, _PYI_*), and the only libpython mapped in
    loader-run is the bundled one."""
    store = LiveStore.start(tmp_path)
    values = {f"SECRET_{i:03d}": f"value-{i}" for i in range(99)} | {"CANARY": CANARY}
    for name, value in values.items():
        store.put(name, value)
    port = free_port()
    agent = loopback_agent(tmp_path, shm, store, port)
    child, out = tmp_path / "child.sh", tmp_path / "runs"
    child.write_text(CHILD)
    child.chmod(0o755)
    out.mkdir()
    agent_url = f"http://127.0.0.1:{port}"
    runner = spawn(
        [str(loader_run), "--agent-url", agent_url, "--watch", "--debounce", "0.05",
         "--", str(child), str(out)],
        tmp_path / "runner.log",
        env=clean_env(tmp_path),
    )  # fmt: skip
    try:
        wait_until(lambda: len(_runs(out)) == 1, what="the first child")
        for change in range(1, 4):
            store.put("CANARY", f"changed-{change}")
            wait_until(lambda n=change: len(_runs(out)) == n + 1, what=f"restart {change}")
        runs = _runs(out)
        shell_own = {"PWD", "SHLVL", "_"}  # what sh itself sets
        first = {k: v for k, v in runs[0].items() if k not in shell_own}
        assert first == {**values, **clean_env(tmp_path)}
        assert [r["CANARY"] for r in runs] == [CANARY, "changed-1", "changed-2", "changed-3"]
        for run in runs:
            assert not [k for k in run if k.startswith("_PYI") or k.startswith("LD_")]
        bundle = loader_run.parent
        for maps in out.glob("maps.*"):
            libpython = {
                line.split()[-1] for line in maps.read_text().splitlines() if "libpython" in line
            }
            assert libpython, "loader-run maps no libpython: not the frozen runner?"
            assert all(path.startswith(str(bundle)) for path in libpython), libpython
    finally:
        code = runner.stop(signal.SIGTERM)
        agent.stop()
        store.proc.stop()
    assert code == 0, runner.logs()
    assert CANARY not in runner.logs() + runner.output()


def test_frozen_loader_run_execs_from_the_store(tmp_path: Path, loader_run: Path) -> None:
    """Straight from the store (token file, no agent), exec mode: the child is the same
    process; and the small things: --version, a usage error on one line with exit 64, a
    mistyped LOADER_* variable named with its fix (read from the bundled declarations)."""
    store = LiveStore.start(tmp_path)
    try:
        store.put("CANARY", CANARY)
        token_file = tmp_path / "token"
        token_file.write_text(store.token("secrets:reveal"))
        token_file.chmod(0o600)
        env = clean_env(
            tmp_path,
            LOADER_STORE_URL=store.url,
            LOADER_TOKEN_FILE=str(token_file),
            LOADER_APP=str(store.app),
            LOADER_ENVIRONMNET="prod",
        )
        proc = subprocess.Popen(
            [str(loader_run), "--", "sh", "-c", 'echo "$$ $CANARY"'],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        store.proc.stop()
    assert proc.returncode == 0, stderr
    assert stdout == f"{proc.pid} {CANARY}\n"
    assert stderr == (
        "loader: warning: LOADER_ENVIRONMNET is not a loader setting; ignored "
        "(did you mean LOADER_ENVIRONMENT?)\n"
    )

    version = run_frozen(loader_run, tmp_path, "--version")
    assert (version.returncode, version.stdout) == (0, "loader-run 0.1.0\n")
    usage = run_frozen(loader_run, tmp_path, "--watch")
    assert usage.returncode == 64
    assert usage.stderr.count("\n") == 1 and "no command given" in usage.stderr
    assert os.access(loader_run, os.X_OK)
