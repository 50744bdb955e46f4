from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_loader_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's LOADER_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("LOADER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def shm() -> Iterator[Path]:
    """A private directory on tmpfs (where the agent is allowed to write secrets)."""
    base = Path("/dev/shm")
    if not base.is_dir():
        pytest.skip("no /dev/shm on this machine")
    path = Path(tempfile.mkdtemp(prefix="loader-test-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)
