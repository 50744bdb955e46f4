"""Rotation journeys (see tests/rotation.py) through a local agent, over TCP and over a unix
socket: the store goes away and comes back, and the agent itself is restarted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rotation import AgentSource, journey, stopping


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_every_change_through_an_agent_restarts_or_signals_through_outages_and_restarts(
    tmp_path: Path, shm: Path, transport: str
) -> None:
    with stopping(AgentSource(tmp_path, shm, transport)) as source:
        journey(tmp_path, source)
