"""What every process's settings share: the choices, the value parsers, the rules that tie two
settings together, how a setting's variable, flag and help line are spelled, and the one-line
error for a bad one.

Each process declares its settings once, in one place, and takes these from here:

* the store and the webhook: pydantic-settings models (:mod:`loader.server.settings`,
  :mod:`loader.webhook.settings`, on :mod:`loader.envsettings`);
* the agent: a dataclass whose fields are its table (:mod:`loader.settings`);
* ``loader run``: the ``OPTIONS`` table (:mod:`loader.runner.options`);
* the management commands: the ``CLIENT`` table (:mod:`loader.commands.invocation`).

Stdlib only, and nothing imported at module level: ``loader run`` reads its options through this
on its exec path. The parsers take a flag's value (maybe typed) or a variable's text and raise
:class:`ValueError` with a message that never repeats the value.
"""

from __future__ import annotations

from loader.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path
    from typing import Any, Protocol, Self, TypeVar

    class Settings(Protocol):
        @classmethod
        def from_environ(cls, environ: Mapping[str, str], **given: Any) -> Self: ...

    S = TypeVar("S", bound=Settings)

PREFIX = "LOADER_"
# The token: a variable (or a file, --token-file), never a flag (argv shows in `ps`).
TOKEN = "LOADER_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error")
# Env file formats: the agent's --format, ``loader run --format``, the API's ?format=, the
# webhook's annotation (:mod:`loader.formats` renders each).
FORMATS = ("dotenv", "dotenv-expand", "shell", "docker", "json")
TEMPLATE_FORMATS = ("auto", "yaml", "json", "text")
# Which references a template fills in (loader.template): auto, $<secrets:N>, ${secrets:N}, both.
TEMPLATE_SPELLINGS = ("auto", "angle", "brace", "both")
# When a change restarts the app (loader.reloads): by the rule, on every change, never.
RESTART_POLICIES = ("auto", "always", "never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
OFF = ("off", "none", "")  # a listen address that turns the endpoint off
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")
# A secret setting can also be read from a file: LOADER_DATABASE_URL_FILE=/path.
FILE_SUFFIX = "_FILE"


# -- names ---------------------------------------------------------------------------------


def env_name(field: str, prefix: str = PREFIX) -> str:
    return prefix + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def help_line(text: str, env: str | None, default: str | None = None) -> str:
    """A flag's help: its text, then the variable and the default, e.g.
    ``Long-poll hold (LOADER_WAIT; default 30s)``."""
    extra = [e for e in (env, f"default {default}" if default else None) if e]
    return f"{text} ({'; '.join(extra)})" if extra else text


class SettingError(ValueError):
    """One bad setting: ``field`` names it (empty for a rule about several settings)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def bad_setting(error: SettingError, prefix: str = PREFIX) -> ConfigError:
    """``bad setting: LOADER_WAIT / --wait: must be at most 60 seconds`` (exit 78)."""
    field = error.field
    where = f"{env_name(field, prefix)} / {flag_name(field)}: " if field else ""
    return ConfigError(f"bad setting: {where}{error.message}")


# -- parsers -------------------------------------------------------------------------------


class Choice:
    """One of ``options`` (``lower``: in any case). Flags offer ``options`` as their choices."""

    __slots__ = ("lower", "options")

    def __init__(self, options: Sequence[str], *, lower: bool = False) -> None:
        self.options, self.lower = tuple(options), lower

    def __call__(self, value: Any) -> str:
        word = str(value).strip()
        word = word.lower() if self.lower else word
        if word not in self.options:
            raise ValueError(f"must be one of {', '.join(self.options)}")
        return word


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError("must be true or false")


def duration(value: Any) -> float:
    """Seconds, from a number or from text like ``30s``, ``5m``, ``1h30m``, ``2d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    from loader.durations import parse_duration

    return parse_duration(str(value))


def seconds(value: Any, *, maximum: float | None = None) -> float:
    """A positive duration, at most ``maximum``."""
    number = duration(value)
    if not number > 0:
        raise ValueError("must be more than 0 seconds")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum:g} seconds")
    return number


def http_url(value: Any) -> str:
    """``http(s)://host[:port]``, without a trailing slash."""
    from urllib.parse import urlsplit

    url = str(value).strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed [IPv6 address
        ok = False
    if not ok:
        raise ValueError("store url must be http(s)://host[:port]")
    return url.rstrip("/")


def template_targets(given: Any, output: Any = None) -> list[tuple[str, str]]:
    """``(source, destination)`` for each template: ``--template SRC:DEST`` (repeatable, or
    comma-separated in ``LOADER_TEMPLATE``), or one ``--template SRC`` with
    ``--template-output DEST``. The destinations must differ."""
    items = [given] if isinstance(given, str) or not hasattr(given, "__iter__") else list(given)
    specs = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    bare = [spec for spec in specs if ":" not in spec]
    pairs = [spec.partition(":") for spec in specs if ":" in spec]
    if output is not None and str(output):
        if len(specs) != 1 or not bare:
            raise ValueError("--template-output goes with one --template SRC (else SRC:DEST)")
        return [(bare[0], str(output))]
    if bare:
        raise ValueError(
            f"--template {bare[0]} needs a destination: SRC:DEST (or --template-output DEST)"
        )
    targets = [(src.strip(), dest.strip()) for src, _, dest in pairs]
    if any(not src or not dest for src, dest in targets):
        raise ValueError("--template takes SRC:DEST, both paths")
    dests = [dest for _, dest in targets]
    if len(set(dests)) != len(dests):
        raise ValueError("two templates render to the same file")
    return targets


def tls_pair(cert: Path | None, key: Path | None) -> None:
    """A certificate without its key (or the reverse) serves nothing."""
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together")


class Listen:
    """A parsed listen address: TCP ``host:port`` or ``unix:/path.sock``."""

    __slots__ = ("host", "path", "port")

    def __init__(self, host: str = "", port: int = 0, path: Path | None = None) -> None:
        self.host, self.port, self.path = host, port, path

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def is_loopback(self) -> bool:
        if self.path is not None or self.host == "localhost":
            return True
        import ipaddress

        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Listen) and (self.host, self.port, self.path) == (
            other.host,
            other.port,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.path))

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    __repr__ = __str__


def parse_listen(text: str, *, allow_unix: bool = True) -> Listen:
    text = text.strip()
    if text.startswith("unix:"):
        if not allow_unix:
            raise ValueError("unix sockets are not supported here")
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError("unix socket paths must be absolute (unix:/path/agent.sock)")
        from pathlib import Path

        return Listen(path=Path(path))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {text!r} must be HOST:PORT (or unix:/path.sock)")
    host = host.strip("[]") or "127.0.0.1"
    return Listen(host=host, port=int(port))


# -- the light tables (loader run, the management commands) --------------------------------


class Option:
    """One row of a light settings table: a flag, its ``LOADER_*`` variable (the flag wins),
    the help text and the default as typed. ``metavar`` None makes it a switch. (A plain class:
    ``dataclasses`` imports ``inspect``, too slow for the exec path.) ``repeat``: the flag may
    be given many times."""

    __slots__ = ("choices", "default", "dest", "env", "flags", "metavar", "repeat", "text")

    def __init__(
        self,
        flag: str,
        text: str,
        metavar: str | None = None,
        *,
        default: str | None = None,
        dest: str | None = None,
        aliases: tuple[str, ...] = (),
        choices: tuple[str, ...] | None = None,
        repeat: bool = False,
    ) -> None:
        self.flags = (flag, *aliases)
        self.repeat = repeat
        self.dest = dest or flag[2:].replace("-", "_")
        self.env = env_name(self.dest)
        self.text, self.metavar, self.default, self.choices = text, metavar, default, choices

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def help(self) -> str:
        return help_line(self.text, self.env, self.default)


def add_options(parser: Any, options: Iterable[Option]) -> None:
    """The options on an argparse parser: values default to None (absent), so the variable or
    the table's default fills in later."""
    for option in options:
        if option.takes_value:
            parser.add_argument(
                *option.flags,
                dest=option.dest,
                metavar=option.metavar,
                choices=option.choices,
                help=option.help,
                **({"action": "append"} if option.repeat else {}),
            )
        else:
            parser.add_argument(
                *option.flags, dest=option.dest, action="store_true", default=None, help=option.help
            )


# -- building ------------------------------------------------------------------------------


def load(cls: type[S], environ: Mapping[str, str] | None = None, **flags: Any) -> S:
    """Settings from the environment (``os.environ`` unless given) plus the flags given
    (``None`` flags are absent; given ones win). Each settings class's ``from_environ`` turns
    a bad setting into one :class:`~loader.errors.ConfigError` line."""
    import os

    given = {k: v for k, v in flags.items() if v is not None}
    return cls.from_environ(os.environ if environ is None else environ, **given)
