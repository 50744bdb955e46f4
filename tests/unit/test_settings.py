"""Each process's settings declaration, as tables: the shared parsers, the store's and the
webhook's models, the agent's table, the runner's and the management commands' options."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from loader.commands.invocation import CLIENT, setting
from loader.envsettings import add_flags as model_flags
from loader.errors import ConfigError, UsageError
from loader.runner.options import OPTIONS, parse
from loader.server.settings import StoreSettings
from loader.settings import AGENT, RENDER, AgentSettings
from loader.settings import add_flags as agent_flags
from loader.settingtypes import (
    Choice,
    boolean,
    duration,
    http_url,
    load,
    seconds,
    tls_pair,
)
from loader.webhook.settings import WebhookSettings

# -- the shared parsers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (duration, "30s", 30.0),
        (duration, "1h30m", 5400.0),
        (duration, 7, 7.0),
        (duration, "0", 0.0),
        (seconds, "5m", 300.0),
        (boolean, "YES", True),
        (boolean, "off", False),
        (boolean, "", False),
        (Choice(("debug", "info"), lower=True), "DEBUG", "debug"),
        (Choice(("Always", "Never")), "Never", "Never"),
        (http_url, "https://store:8700/", "https://store:8700"),
        (http_url, " http://[::1]:1 ", "http://[::1]:1"),
    ],
)
def test_parsers_read_what_people_type(parse: Any, text: object, value: object) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (duration, "9x", "bad duration"),
        (seconds, "0s", "more than 0"),
        (boolean, "maybe", "true or false"),
        (Choice(("debug", "info")), "DEBUG", "one of debug, info"),
        (http_url, "store:8700", "http(s)://"),
        (http_url, "ftp://store", "http(s)://"),
        (http_url, "http://[::1", "http(s)://"),
    ],
)
def test_parsers_refuse_without_echoing(parse: Any, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse(text)
    if len(text) > 3:
        assert text not in str(info.value)


@pytest.mark.parametrize(
    ("cert", "key", "ok"),
    [
        (None, None, True),
        (Path("c"), Path("k"), True),
        (Path("c"), None, False),
        (None, Path("k"), False),
    ],
)
def test_tls_cert_and_key_go_together(cert: Path | None, key: Path | None, ok: bool) -> None:
    if ok:
        tls_pair(cert, key)
    else:
        with pytest.raises(ValueError, match="go together"):
            tls_pair(cert, key)


# -- the store's model -------------------------------------------------------------------------

STORE = {"LOADER_DATA_DIR": "/srv/loader"}


@pytest.mark.parametrize(
    ("environ", "flags", "field", "value"),
    [
        ({}, {}, "listen", "127.0.0.1:8700"),
        ({"LOADER_LISTEN": "0.0.0.0:1"}, {}, "listen", "0.0.0.0:1"),
        ({"loader_listen": "0.0.0.0:1"}, {}, "listen", "0.0.0.0:1"),  # any case
        ({"LOADER_LISTEN": "0.0.0.0:1"}, {"listen": "0.0.0.0:2"}, "listen", "0.0.0.0:2"),
        ({"LOADER_DB_TIMEOUT": "2m"}, {}, "db_timeout", 120.0),
        ({}, {"header_timeout": "0"}, "header_timeout", 0.0),
        ({}, {}, "access_token_ttl", 900.0),
        ({"LOADER_RATE_LIMIT": "20/s"}, {}, "rate_limit", 20.0),
        ({}, {}, "refusal_rate_limit", 5.0),
        ({"LOADER_LOG_LEVEL": "DEBUG"}, {}, "log_level", "debug"),
        ({"LOADER_MIGRATE": "true"}, {}, "migrate", True),
        ({"LOADER_MIGRATE": "true"}, {"migrate": False}, "migrate", False),
    ],
)
def test_store_settings_come_from_flag_then_variable_then_default(
    environ: dict[str, str], flags: dict[str, Any], field: str, value: object
) -> None:
    settings = StoreSettings.from_environ({**STORE, **environ}, **flags)
    assert getattr(settings, field) == value


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "say where the store lives"),
        ({"LOADER_DATABASE_URL": "sqlite:////x.db"}, "say which master key"),
        ({**STORE, "LOADER_LISTEN": "unix:/x.sock"}, "LOADER_LISTEN / --listen: unix sockets"),
        ({**STORE, "LOADER_DB_TIMEOUT": "11m"}, "LOADER_DB_TIMEOUT / --db-timeout: "),
        ({**STORE, "LOADER_MAX_VERSIONS": "0"}, "LOADER_MAX_VERSIONS / --max-versions: "),
        ({**STORE, "LOADER_LOG_LEVEL": "loud"}, "LOADER_LOG_LEVEL / --log-level: "),
        ({**STORE, "LOADER_TLS_KEY": "/k.pem"}, "--tls-cert and --tls-key go together"),
        ({**STORE, "LOADER_DATABASE_URL": "mysql://u:hunter2@db/x"}, "--database-url: database"),
    ],
)
def test_store_settings_refusals_are_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_environ(environ)
    text = str(info.value)
    assert text.startswith("bad setting: ") and message in text and "\n" not in text
    assert "hunter2" not in text


def test_the_database_url_is_secret_and_may_come_from_a_file(tmp_path: Path) -> None:
    url = "postgresql://loader:hunter2@db:5432/loader"
    (tmp_path / "url").write_text(url + "\n")
    (tmp_path / "url").chmod(0o600)
    environ = {**STORE, "LOADER_DATABASE_URL_FILE": str(tmp_path / "url")}
    settings = StoreSettings.from_environ(environ)
    assert settings.db_url == url
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert StoreSettings.from_environ(environ, database_url="sqlite:////a.db").db_url == (
        "sqlite:////a.db"
    )
    with pytest.raises(ConfigError, match="not both"):
        StoreSettings.from_environ({**environ, "LOADER_DATABASE_URL": url})


def test_the_store_model_declares_every_setting_once_for_every_use() -> None:
    """Each field has a description; its flag, its variable and its help come from it."""
    parser = argparse.ArgumentParser()
    model_flags(parser, StoreSettings)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(actions) == set(StoreSettings.model_fields)
    for name, field in StoreSettings.model_fields.items():
        action = actions[name]
        assert field.description, name
        assert action.option_strings == [f"--{name.replace('_', '-')}"]
        assert f"LOADER_{name.upper()}" in (action.help or ""), name
        assert action.default is None, name  # absent: the variable or the default applies
    assert actions["log_level"].choices == ["debug", "info", "warning", "error"]
    assert actions["migrate"].nargs == 0  # a switch
    assert actions["rate_burst"].type is int
    assert actions["db_timeout"].type is None  # "5s": read by the model
    assert "default 5s" in (actions["db_timeout"].help or "")


def test_store_env_names_include_the_secret_files() -> None:
    names = StoreSettings.env_names()
    assert {"LOADER_DATABASE_URL", "LOADER_DATABASE_URL_FILE", "LOADER_DB_TIMEOUT"} <= names
    assert "LOADER_LISTEN_FILE" not in names  # only secret settings come from files


# -- the webhook's model -----------------------------------------------------------------------

HOOK = {"LOADER_WEBHOOK_IMAGE": "img", "LOADER_WEBHOOK_STORE_URL": "http://s:1"}


@pytest.mark.parametrize(
    ("environ", "flags", "field", "value"),
    [
        ({"LOADER_WEBHOOK_INSECURE": "1"}, {}, "listen", "0.0.0.0:8443"),
        ({"LOADER_WEBHOOK_INSECURE": "1"}, {}, "log_level", None),  # then LOADER_LOG_LEVEL
        ({}, {"insecure": True, "tls_reload_interval": "1m"}, "tls_reload_interval", 60.0),
        (
            {"LOADER_WEBHOOK_INSECURE": "1", "LOADER_LISTEN": "0.0.0.0:1"},
            {},
            "listen",
            "0.0.0.0:8443",
        ),
        ({}, {"insecure": True, "store_url": "https://s:1/"}, "store_url", "https://s:1"),
    ],
)
def test_webhook_settings(
    environ: dict[str, str], flags: dict[str, Any], field: str, value: object
) -> None:
    assert getattr(WebhookSettings.from_environ({**HOOK, **environ}, **flags), field) == value


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({}, "only calls webhooks over HTTPS"),
        ({"tls_cert": "/c.pem"}, "--tls-cert and --tls-key go together"),
        ({"insecure": True, "image_pull_policy": "Sometimes"}, "LOADER_WEBHOOK_IMAGE_PULL_POLICY"),
        ({"insecure": True, "store_url": "s:1"}, "LOADER_WEBHOOK_STORE_URL / --store-url"),
        ({"insecure": True, "render_timeout": "0s"}, "LOADER_WEBHOOK_RENDER_TIMEOUT"),
    ],
)
def test_webhook_settings_refusals(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WebhookSettings.from_environ(HOOK, **flags)


# -- the agent's table -------------------------------------------------------------------------


def _flags(command: str) -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    agent_flags(parser, command)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def test_the_agent_table_gives_each_command_its_flags() -> None:
    daemon, render = _flags(AGENT), _flags(RENDER)
    assert {"listen", "on_change", "max_stale", "wait", "log_file"} <= set(daemon) - set(render)
    assert set(render) - set(daemon) == {"timeout"}
    assert "token" not in daemon | render  # argv shows in `ps`: a variable or a file only
    assert daemon["environment"].option_strings == ["--environment", "--env"]
    assert daemon["format"].choices == ["dotenv", "dotenv-expand", "shell", "docker", "json"]
    assert "(LOADER_WAIT; default 30s)" in (daemon["wait"].help or "")
    names = {f.name for f in fields(AgentSettings)}
    assert set(daemon) | set(render) <= names


def test_agent_defaults_are_parsed_like_variables() -> None:
    s = load(AgentSettings, {}, store_url="http://s:1", app=1, token="t", output="/dev/shm/x")
    assert (s.wait, s.timeout, s.backoff_initial, s.allow_disk) == (30.0, 30.0, 0.2, False)
    assert (s.format, s.environment, s.log_level, s.listen) == (
        "dotenv",
        "default",
        "info",
        "127.0.0.1:8701",
    )


# -- the runner's and the management commands' tables -----------------------------------------


def test_runner_options_name_their_variable_from_their_flag() -> None:
    by_flag = {o.flag: o for o in OPTIONS}
    assert by_flag["--from-file"].env == "LOADER_FROM_FILE"
    assert (by_flag["--env"].dest, by_flag["--env"].env) == ("environment", "LOADER_ENVIRONMENT")
    opts = parse(["--", "true"], {"LOADER_GRACE": "3s"})
    assert opts.duration("grace") == 3.0
    assert opts.duration("timeout") == 10.0  # the table's default
    assert opts.get("environment") == "default"
    assert parse(["--timeout", "1m", "--", "true"], {}).duration("timeout") == 60.0
    with pytest.raises(UsageError, match="run: --log-level: must be one of"):
        parse(["--", "true"], {"LOADER_LOG_LEVEL": "loud"}).choice("log_level", ("info",))


def test_client_settings_come_from_flag_then_variable_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = argparse.Namespace(store_url=None, environment="prod")
    assert setting(ns, "store_url") == "http://127.0.0.1:8700"
    monkeypatch.setenv("LOADER_STORE_URL", "http://s:1")
    monkeypatch.setenv("LOADER_ENVIRONMENT", "dev")
    assert (setting(ns, "store_url"), setting(ns, "environment")) == ("http://s:1", "prod")
    assert {o.env for o in CLIENT} >= {"LOADER_STORE_URL", "LOADER_TOKEN_FILE", "LOADER_APP"}
