"""Rotation journey (see tests/rotation.py) straight from the store, which goes away and comes
back in the middle."""

from __future__ import annotations

from pathlib import Path

from tests.rotation import StoreSource, journey, stopping


def test_every_store_change_restarts_or_signals_through_an_outage(tmp_path: Path) -> None:
    with stopping(StoreSource(tmp_path)) as source:
        journey(tmp_path, source)
