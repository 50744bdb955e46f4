"""The list of LOADER_* variables loader reads, and the hints for the ones it does not."""

from __future__ import annotations

from dataclasses import fields

import pytest

from loader.envcheck import KNOWN, is_service_link, unknown
from loader.runner.options import OPTIONS
from loader.server.settings import StoreSettings
from loader.settings import AgentSettings
from loader.webhook.settings import WebhookSettings

EXTRAS = {"LOADER_TOKEN", "LOADER_HEALTHCHECK_URL"}  # read outside the settings classes


def test_known_is_exactly_what_the_settings_read() -> None:
    read = {f"LOADER_{f.name.upper()}" for f in fields(AgentSettings)}
    read |= {f"LOADER_{name.upper()}" for name in StoreSettings.model_fields}
    read |= {f"LOADER_WEBHOOK_{name.upper()}" for name in WebhookSettings.model_fields}
    read |= {o.env for o in OPTIONS}
    assert read | EXTRAS == KNOWN


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
