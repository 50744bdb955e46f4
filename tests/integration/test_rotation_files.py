"""Rotation journeys (see tests/rotation.py) with an env file as the source: replaced by a
rename, and rewritten in place; and `--splay`."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from tests.procs import loader_env, run_loader, start_runner, wait_until
from tests.rotation import CHILD, FileByRename, FileInPlace, journey


@pytest.mark.parametrize("kind", [FileByRename, FileInPlace], ids=["renamed", "in-place"])
def test_every_file_change_restarts_or_signals_through_removal_and_bursts(
    tmp_path: Path, kind: type[FileByRename]
) -> None:
    journey(tmp_path, kind(tmp_path / "app.env"))


def test_splay_waits_a_random_time_up_to_it_before_each_restart(tmp_path: Path) -> None:
    """1. `--splay 0.6s`: three changes, three restarts, each after a logged random wait of at
    most 0.6 s; 2. a bad duration is a usage error (64)."""
    source = FileByRename(tmp_path / "app.env")
    log, script = tmp_path / "child.log", tmp_path / "child.py"
    script.write_text(CHILD)
    watch = ["--watch", "--debounce", "0.05", "--splay", "0.6s", *source.flags]
    child = [sys.executable, str(script), str(log), *source.flags]
    runner = start_runner(
        tmp_path / "runner.log", watch, child, env=loader_env(LOADER_LOG_LEVEL="info")
    )
    try:
        wait_until(lambda: " v0\n" in _text(log), what="the first child")
        for value in ("v1", "v2", "v3"):
            source.write(value)
            wait_until(lambda v=value: f" {v}\n" in _text(log), what=f"restart with {value}")
    finally:
        runner.stop(signal.SIGTERM)
    waits = [float(w) for w in re.findall(r"acting in ([\d.]+)s \(--splay\)", runner.logs())]
    assert len(waits) == 3 and all(0 <= w <= 0.6 for w in waits), runner.logs()
    assert [line.split()[2] for line in _text(log).splitlines()] == ["v0", "v1", "v2", "v3"]

    bad = run_loader("run", "--watch", "--splay", "soon", *source.flags, "--", "true")
    assert bad.returncode == 64 and b"--splay" in bad.stderr


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
