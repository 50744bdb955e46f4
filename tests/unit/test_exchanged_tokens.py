"""The agent's access tokens for a workload JWT: when it trades (first use, a third of the
life left, after a refusal), what it reads (the file afresh each time), and that a rotated
file counts as new once. A fake exchange and clock; the file is real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loader.agent.tokens import ExchangedTokens
from loader.errors import ConfigError, UnauthorizedError


class Store:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.refuse = False

    async def exchange(self, request: dict[str, str]) -> bytes:
        self.seen.append(request["assertion"])
        if self.refuse:
            raise UnauthorizedError("store: workload token refused: expired")
        return json.dumps({"access_token": f"at{len(self.seen)}", "expires_in": 90}).encode()


@pytest.fixture
def jwt_file(tmp_path: Path) -> Path:
    path = tmp_path / "loader"
    path.write_text("jwt-1\n")
    path.chmod(0o600)
    return path


async def test_trades_when_due_and_reads_the_file_each_time(jwt_file: Path) -> None:
    now = [1000.0]
    store = Store()
    tokens = ExchangedTokens(jwt_file, clock=lambda: now[0])
    tokens.exchange = store.exchange
    assert tokens.valid_for() == 0.0
    assert await tokens.current() == "at1"
    assert tokens.valid_for() == pytest.approx(60)  # renewed with a third (30 s) left
    now[0] += 59
    assert await tokens.current() == "at1"
    jwt_file.write_text("jwt-2\n")  # the kubelet rotated it
    now[0] += 1
    assert await tokens.current() == "at2"
    assert store.seen == ["jwt-1", "jwt-2"]


async def test_a_refusal_forgets_the_token_and_a_new_file_counts_once(jwt_file: Path) -> None:
    store = Store()
    tokens = ExchangedTokens(jwt_file, clock=lambda: 1000.0)
    tokens.exchange = store.exchange
    await tokens.current()
    assert tokens.reload() is False  # refused, same file: trade again, nothing new
    assert await tokens.current() == "at2"
    store.refuse = True
    tokens.reload()
    with pytest.raises(UnauthorizedError):
        await tokens.current()
    jwt_file.write_text("jwt-2\n")
    assert tokens.reload() is True
    assert tokens.reload() is False  # the same new JWT is not new twice
    store.refuse = False
    assert await tokens.current() == "at4" and store.seen[-1] == "jwt-2"


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        ExchangedTokens(tmp_path / "missing")
