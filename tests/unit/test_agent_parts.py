"""Unit tables for the agent's pure parts: Host checks, listen addresses, state."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loader.agent.local_api import host_is_loopback
from loader.agent.presented import AgentState
from loader.agent.snapshot import Snapshot
from loader.errors import ConfigError
from loader.settings import AgentSettings
from loader.settingtypes import load, parse_listen


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("localhost:8701", True),
        ("LOCALHOST:1", True),
        ("127.0.0.1", True),
        ("127.0.0.1:8701", True),
        ("[::1]", True),
        ("[::1]:8701", True),
        (None, False),
        ("", False),
        ("evil.com", False),
        ("localhost.evil.com", False),
        ("127.0.0.1.nip.io", False),
        ("127.0.0.2", False),
        ("localhost:", False),
        ("localhost:80x", False),
        ("[::1]x", False),
        ("[::2]", False),
        ("0.0.0.0", False),
        ("localhost:8701:1", False),
    ],
)
def test_host_is_loopback(host: str | None, ok: bool) -> None:
    assert host_is_loopback(host) is ok


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("127.0.0.1:8701", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("unix:/x.sock", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("10.1.2.3:80", False),
        ("example.com:1", False),
    ],
)
def test_listen_loopback(text: str, loopback: bool) -> None:
    assert parse_listen(text).is_loopback is loopback


@pytest.mark.parametrize("text", ["nohost", "1.2.3.4:99999", "unix:relative.sock", "h:-1"])
def test_listen_parse_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


BASE = {"store_url": "http://store:8700", "token": "t", "app": 1, "output": "/dev/shm/x"}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"listen": "0.0.0.0:8701"}, "loopback"),
        ({"store_url": "store:8700"}, "http"),
        ({"app": 0}, "APP"),
        ({"output": None}, "nothing to render"),
        ({"template": "/t.yaml"}, "needs a destination"),
        ({"template_output": "/o.yaml"}, "goes with one --template"),
        ({"template": ["/a.yaml:/o.yaml", "/b.yaml"]}, "needs a destination"),
        ({"template": ["/a.yaml:/o.yaml", "/b.yaml:/o.yaml"]}, "same file"),
        ({"template": ["/a.yaml:/o.yaml"], "template_output": "/p"}, "goes with one"),
        ({"template_spelling": "dollar"}, "TEMPLATE_SPELLING"),
        ({"restart": "sometimes"}, "RESTART"),
        ({"token": None}, "token"),
        ({"wait": 120}, "WAIT"),
        ({"environment": "a/b"}, "ENVIRONMENT"),
        ({"max_stale": "soon"}, "MAX_STALE"),
    ],
)
def test_agent_settings_refusals_are_one_line(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(AgentSettings, **{**BASE, **change})
    message = str(info.value)
    assert "\n" not in message and fragment in message


def test_agent_settings_durations_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADER_FORMAT", "shell")
    monkeypatch.setenv("LOADER_MAX_STALE", "5m")
    s = load(AgentSettings, **BASE)
    assert s.format == "shell" and s.max_stale == 300
    assert load(AgentSettings, **BASE, format="json").format == "json"


def test_settings_read_any_case_from_the_given_environment_only() -> None:
    environ = {"loader_store_url": "http://s:1", "LOADER_APP": "4", "LOADER_TOKEN": "t"}
    s = load(AgentSettings, environ, output="/dev/shm/x")
    assert (s.store_url, s.app, s.environment) == ("http://s:1", 4, "default")
    with pytest.raises(ConfigError, match=r"LOADER_STORE_URL / --store-url: required"):
        load(AgentSettings, {"LOADER_APP": "4"}, token="t", output="/dev/shm/x")


def test_the_agent_command_loads_no_store_crypto_or_database_code() -> None:
    """The sidecar's memory is mostly its imports: building the CLI for `loader agent` must
    not pull in the store (cryptography, asyncpg, sqlite3) or pydantic (the store's)."""
    code = (
        "import sys\n"
        "from loader.cli import main\n"
        "try:\n    main(['agent', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('cryptography', 'asyncpg', 'pydantic', 'jwt', 'loader.store', "
        "'loader.server', 'sqlite3')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_state_age_readiness_and_generations() -> None:
    state = AgentState(max_stale=None)
    assert state.readiness().ready is False and state.age() is None
    snap = Snapshot(3, '"r1.3"', {"A": "1"})
    state.rendered_ok(snap)
    assert state.readiness().ready and state.generation == 1
    state.rendered_ok(Snapshot(4, '"r1.4"', {"A": "1"}))  # same values: no new generation
    assert state.generation == 1
    state.failed("store unreachable")
    assert state.readiness().last_error == "store unreachable"
    state.confirmed('"r1.4"')
    assert state.readiness().last_error is None
    stale = AgentState(max_stale=0.0)
    stale.rendered_ok(snap)
    assert stale.readiness().stale and not stale.readiness().ready
