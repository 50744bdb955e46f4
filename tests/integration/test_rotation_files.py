"""Rotation journeys (see tests/rotation.py) with an env file as the source: replaced by a
rename, and rewritten in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rotation import FileByRename, FileInPlace, journey


@pytest.mark.parametrize("kind", [FileByRename, FileInPlace], ids=["renamed", "in-place"])
def test_every_file_change_restarts_or_signals_through_removal_and_bursts(
    tmp_path: Path, kind: type[FileByRename]
) -> None:
    journey(tmp_path, kind(tmp_path / "app.env"))
