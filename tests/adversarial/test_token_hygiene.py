"""The app loader starts cannot get loader's token: not from its own environment (the token or
the token file's path, which would also get around --only), not from its parent's
/proc/PID/environ. Nor can an agent's --on-change command. The attacking child runs as the
same uid, as an ordinary process (no capabilities)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.otheruser import UNPRIVILEGED, needs_root
from tests.procs import LOADER, LiveStore, loader_env, spawn, wait_for_line, wait_until

pytestmark = needs_root
STEAL = r"""
env | grep '^LOADER_' || true
[ -n "$LOADER_TOKEN_FILE" ] && cat "$LOADER_TOKEN_FILE"
cat /proc/$PPID/environ 2>&1 | tr '\0' '\n'
echo "A has ${#A} characters, B=$B."
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStore]:
    live = LiveStore.start(tmp_path)
    live.put("A", "alpha")
    live.put("B", "beta-not-for-this-app")
    try:
        yield live
    finally:
        live.proc.stop()


@pytest.mark.parametrize("mode", ["--watch", "--mask"])
@pytest.mark.parametrize("via", ["LOADER_TOKEN", "LOADER_TOKEN_FILE"])
def test_supervised_child_cannot_get_the_token(
    live: LiveStore, tmp_path: Path, via: str, mode: str
) -> None:
    """1. `loader run --watch --only A` (or --mask) from the store, the token given as a variable
    or a file; 2. the child looks in its environment, in the token file the variable names and
    in its parent's environ; 3. it finds no token, no LOADER_* credential, and only A."""
    token = live.token("secrets:reveal")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    given = {via: token if via == "LOADER_TOKEN" else str(token_file)}
    env = loader_env(LOADER_STORE_URL=live.url, LOADER_APP=str(live.app), **given)
    out = subprocess.run(
        [*UNPRIVILEGED, *LOADER, "run", mode, "--only", "A", "--", "sh", "-c", STEAL],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    seen = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert "A has 5 characters, B=." in seen  # it ran, with only what --only allows
    assert token not in seen and "LOADER_TOKEN" not in seen
    assert "Permission denied" in seen  # /proc/$PPID/environ is closed


def test_on_change_command_cannot_get_the_agents_token(
    live: LiveStore, tmp_path: Path, shm: Path
) -> None:
    """1. an agent holding the token in LOADER_TOKEN and LOADER_TOKEN_FILE runs --on-change
    after its first render; 2. the command looks in its environment and in the agent's
    environ; 3. it finds neither the token nor the file's path."""
    token = live.token("secrets:reveal")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    loot = tmp_path / "loot"
    env = loader_env(
        LOADER_STORE_URL=live.url,
        LOADER_APP=str(live.app),
        LOADER_TOKEN=token,
        LOADER_TOKEN_FILE=str(token_file),
    )
    agent = spawn(
        [
            *UNPRIVILEGED,
            *LOADER,
            "agent",
            "--output",
            str(shm / "app.env"),
            "--listen",
            "127.0.0.1:0",
            "--on-change",
            f"( {STEAL} ) > {loot}.tmp 2>&1; mv {loot}.tmp {loot}",
        ],
        tmp_path / "agent.log",
        env,
    )
    try:
        wait_for_line(agent, r"listening on (\S+)")
        wait_until(loot.exists, what="the --on-change command")
        seen = loot.read_text()
    finally:
        agent.stop()
    assert "A has 0 characters, B=." in seen  # it ran (values go to the file, not its env)
    assert token not in seen and "LOADER_TOKEN" not in seen and str(token_file) not in seen
    assert "Permission denied" in seen
