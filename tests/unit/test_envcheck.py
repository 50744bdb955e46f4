"""The list of LOADER_* variables loader reads, and the hints for the ones it does not."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from loader.commands.invocation import CLIENT
from loader.envcheck import is_service_link, unknown
from loader.runner.options import OPTIONS
from loader.server.settings import StoreSettings
from loader.settingnames import AGENT, MODELS, _imported, known, names_of, unexplained
from loader.settings import AgentSettings
from loader.webhook.settings import WebhookSettings

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = {"LOADER_TOKEN", "LOADER_HEALTHCHECK_URL"}  # read outside the settings classes


def test_known_is_exactly_what_the_settings_read() -> None:
    read = {f"LOADER_{f.name.upper()}" for f in fields(AgentSettings)}
    read |= {f"LOADER_{name.upper()}" for name in StoreSettings.model_fields}
    read |= {"LOADER_DATABASE_URL_FILE"}  # the secret field, from a file
    read |= {f"LOADER_WEBHOOK_{name.upper()}" for name in WebhookSettings.model_fields}
    read |= {o.env for o in OPTIONS} | {o.env for o in CLIENT}
    assert read | EXTRAS == known()


def test_every_variable_the_code_and_the_chart_name_is_known() -> None:
    """A variable read (or set for the agent, by the webhook and the chart) outside the
    declarations would be called a typo: each one named in src/ and helm/ is known."""
    named: set[str] = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "helm").rglob("*.yaml")]:
        named |= set(re.findall(r"\bLOADER_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    named = {n for n in named if not is_service_link(n)}
    named -= {"LOADER_WEBHOOK", "LOADER_ENV"}  # a prefix; envcheck's example of a typo
    assert named - known() == set()


def test_the_declarations_read_from_source_are_the_classes() -> None:
    """The agent's table and the models are read from their source text (no import on the
    exec path): exactly what the imported classes declare."""
    assert names_of(*AGENT) == {f"LOADER_{f.name.upper()}" for f in fields(AgentSettings)}
    assert names_of("loader.server.settings", "StoreSettings") == StoreSettings.env_names()
    assert names_of("loader.webhook.settings", "WebhookSettings") == WebhookSettings.env_names()
    for module, cls in MODELS:
        assert _imported(module, cls) == names_of(module, cls)
    assert _imported(*AGENT) == names_of(*AGENT)


def test_names_cost_the_runner_no_import() -> None:
    """Another process's variable in `loader run`'s environment loads neither the agent's
    table nor pydantic (nor does a typo, for its hint)."""
    code = (
        "import sys\n"
        "from loader.envcheck import unknown\n"
        "environ = {'LOADER_AGENT_URL': 'x', 'LOADER_OUTPUT': 'x', 'LOADER_DB_TIMEOUT': '1',\n"
        "           'LOADER_WEBHOOK_IMAGE': 'x'}\n"
        "assert unknown(environ) == [], unknown(environ)\n"
        "heavy = ('pydantic', 'loader.settings', 'loader.server', 'loader.commands')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert unexplained(["LOADER_ENV", "LOADER_APP"]) == ["LOADER_ENV"]


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("LOADER_ENV", "LOADER_ENVIRONMENT"),
        ("LOADER_STORE_ULR", "LOADER_STORE_URL"),
        ("LOADER_TOKN", "LOADER_TOKEN"),
        ("LOADER_DATADIR", "LOADER_DATA_DIR"),
        ("LOADER_WEBHOOK_IMAGES", "LOADER_WEBHOOK_IMAGE"),
        ("LOADER_XYZZY", None),
    ],
)
def test_unknown_variables_get_the_closest_known_name(variable: str, hint: str | None) -> None:
    assert unknown({variable: "x", "LOADER_APP": "1", "PATH": "/bin"}) == [(variable, hint)]


@pytest.mark.parametrize(
    "name",
    [
        "LOADER_STORE_PORT",
        "LOADER_STORE_SERVICE_HOST",
        "LOADER_STORE_SERVICE_PORT_HTTP",
        "LOADER_STORE_PORT_8700_TCP",
        "LOADER_STORE_PORT_8700_TCP_ADDR",
        "LOADER_WEBHOOK_PORT_443_TCP_PROTO",
    ],
)
def test_kubernetes_service_links_are_not_typos(name: str) -> None:
    assert is_service_link(name)
    assert unknown({name: "tcp://10.0.0.1:8700"}) == []
