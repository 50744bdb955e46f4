from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_loader_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's LOADER_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("LOADER_"):
            monkeypatch.delenv(name)
