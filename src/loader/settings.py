"""Settings for the long-running commands, from ``LOADER_*`` variables and flags (flags win).

Built once at the entry point (``cli``) and passed down; nothing reads the environment later.
A bad setting becomes one :class:`~loader.errors.ConfigError` line (exit 78) before any network
call, naming the variable and the flag.

This module is the agent's, and imports no validation framework: the sidecar's memory is mostly
its imports, and pydantic would add about 8 MiB to it. The store and the webhook build their
settings on pydantic (:mod:`loader.envsettings`); all of them go through :func:`load`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit

from loader.errors import ConfigError
from loader.formats import FORMATS
from loader.names import DEFAULT_ENVIRONMENT, ENV_NAME_MAX, ENV_NAME_PATTERN
from loader.units import parse_duration

LOG_LEVELS = ("debug", "info", "warning", "error")
TEMPLATE_FORMATS = ("auto", "yaml", "json", "text")


class SettingError(ValueError):
    """One bad setting: ``field`` names it (empty for a rule about several settings)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Settings(Protocol):
    env_prefix: ClassVar[str]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **given: Any) -> Any: ...


S = TypeVar("S", bound=Settings)


def load(cls: type[S], environ: Mapping[str, str] | None = None, **flags: Any) -> S:
    """Build settings from the environment plus the flags given (``None`` flags are absent)."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        settings: S = cls.from_environ(os.environ if environ is None else environ, **given)
    except SettingError as exc:
        where = (
            f"{cls.env_prefix}{exc.field.upper()} / --{exc.field.replace('_', '-')}: "
            if exc.field
            else ""
        )
        raise ConfigError(f"bad setting: {where}{exc.message}") from None
    return settings


def from_prefix(environ: Mapping[str, str], prefix: str, names: list[str]) -> dict[str, str]:
    """``{name: value}`` for each ``<prefix><NAME>`` variable set (in any case)."""
    upper = {key.upper(): value for key, value in environ.items()}
    return {name: upper[key] for name in names if (key := prefix + name.upper()) in upper}


class Secret:
    """A value that does not show itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Listen:
    """A parsed listen address: TCP ``host:port`` or ``unix:/path.sock``."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, *, allow_unix: bool = True) -> Listen:
    text = text.strip()
    if text.startswith("unix:"):
        if not allow_unix:
            raise ValueError("unix sockets are not supported here")
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError("unix socket paths must be absolute (unix:/path/agent.sock)")
        return Listen(path=Path(path))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {text!r} must be HOST:PORT (or unix:/path.sock)")
    host = host.strip("[]") or "127.0.0.1"
    return Listen(host=host, port=int(port))


def is_loopback(listen: Listen) -> bool:
    if listen.is_unix:
        return True
    if listen.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(listen.host).is_loopback
    except ValueError:
        return False


# -- field parsers: each takes a flag's value (typed) or a variable's (text) -------------------

Parser = Callable[[Any], Any]


def text(value: Any) -> str:
    return str(value)


def optional(parse: Parser) -> Parser:
    def one(value: Any) -> Any:
        return None if value is None or value == "" else parse(value)

    return one


def path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(str(value))


def choice(*options: str, lower: bool = False) -> Parser:
    def one(value: Any) -> str:
        word = str(value).strip()
        word = word.lower() if lower else word
        if word not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return word

    return one


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def integer(minimum: int) -> Parser:
    def one(value: Any) -> int:
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number

    return one


def seconds(maximum: float | None = None) -> Parser:
    """A positive duration: seconds as a number or text like ``30s``, ``5m``, ``1h``."""

    def one(value: Any) -> float:
        number = float(value) if isinstance(value, int | float) else parse_duration(str(value))
        if not number > 0:
            raise ValueError("must be more than 0 seconds")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum:g} seconds")
        return number

    return one


def matching(pattern: str, max_length: int) -> Parser:
    compiled = re.compile(pattern)

    def one(value: Any) -> str:
        word = str(value)
        if len(word) > max_length or compiled.fullmatch(word) is None:
            raise ValueError(f"must match {pattern} and have at most {max_length} characters")
        return word

    return one


def app_id_or_name(value: Any) -> int | str:
    if isinstance(value, int):
        if value < 1:
            raise ValueError("app ids start at 1")
        return value
    from loader.errors import InvalidRequestError
    from loader.names import app_ref

    try:
        return app_ref(str(value))
    except InvalidRequestError as exc:
        raise ValueError(str(exc)) from None


def http_url(value: Any) -> str:
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("store url must be http(s)://host[:port]")
    return url.rstrip("/")


def secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value))


def parse_fields(
    parsers: Mapping[str, Parser], raw: Mapping[str, Any], required: frozenset[str]
) -> dict[str, Any]:
    """Each raw value through its field's parser; a missing required field or a bad value is a
    SettingError naming the field (never echoing the value)."""
    out: dict[str, Any] = {}
    for name, parse in parsers.items():
        if name not in raw:
            if name in required:
                raise SettingError(name, "required")
            continue
        try:
            out[name] = parse(raw[name])
        except ValueError as exc:
            raise SettingError(name, str(exc)) from None
    return out


# -- the agent ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """``loader agent`` and ``loader render --once``."""

    env_prefix: ClassVar[str] = "LOADER_"

    store_url: str
    app: int | str  # an id, or a name looked up at start
    token: Secret | None = None
    token_file: Path | None = None
    environment: str = DEFAULT_ENVIRONMENT
    output: Path | None = None
    format: str = "dotenv"
    template: Path | None = None
    template_output: Path | None = None
    template_format: str = "auto"
    names: str | None = None
    listen: str = "127.0.0.1:8701"
    allow_disk: bool = False
    on_change: str | None = None
    max_stale: float | None = None
    ca_file: Path | None = None
    wait: float = 30.0
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    timeout: float = 30.0
    log_level: str = "info"
    log_file: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **given: Any) -> AgentSettings:
        raw = {**from_prefix(environ, cls.env_prefix, list(_AGENT_FIELDS)), **given}
        return cls(**parse_fields(_AGENT_FIELDS, raw, frozenset({"store_url", "app"})))

    def __post_init__(self) -> None:
        if self.token is None and self.token_file is None:
            raise SettingError("", "a token is required: LOADER_TOKEN_FILE (or LOADER_TOKEN)")
        if self.output is None and self.template is None:
            raise SettingError("", "nothing to render: set --output and/or --template")
        if (self.template is None) != (self.template_output is None):
            raise SettingError("", "--template and --template-output go together")
        if self.listen not in ("off", "none", ""):
            try:
                address = parse_listen(self.listen)
            except ValueError as exc:
                raise SettingError("listen", str(exc)) from None
            if not is_loopback(address):
                raise SettingError(
                    "listen",
                    f"refusing to listen on {self.listen}: the local endpoint binds only to "
                    "loopback (127.0.0.1, ::1) or a unix socket",
                )

    @property
    def listen_address(self) -> Listen | None:
        if self.listen in ("off", "none", ""):
            return None
        return parse_listen(self.listen)

    @property
    def name_filter(self) -> list[str] | None:
        if not self.names:
            return None
        return [n.strip() for n in self.names.split(",") if n.strip()]

    @property
    def resolved_template_format(self) -> str:
        if self.template_format != "auto":
            return self.template_format
        from loader.template import kind_for

        return kind_for(str(self.template or ""))


_AGENT_FIELDS: dict[str, Parser] = {
    "store_url": http_url,
    "app": app_id_or_name,
    "token": optional(secret),
    "token_file": optional(path),
    "environment": matching(ENV_NAME_PATTERN, ENV_NAME_MAX),
    "output": optional(path),
    "format": choice(*FORMATS),
    "template": optional(path),
    "template_output": optional(path),
    "template_format": choice(*TEMPLATE_FORMATS),
    "names": optional(text),
    "listen": text,
    "allow_disk": boolean,
    "on_change": optional(text),
    "max_stale": optional(seconds()),
    "ca_file": optional(path),
    "wait": seconds(maximum=60),
    "backoff_initial": seconds(),
    "backoff_max": seconds(),
    "timeout": seconds(),
    "log_level": choice(*LOG_LEVELS, lower=True),
    "log_file": optional(path),
}
assert set(_AGENT_FIELDS) == {f.name for f in fields(AgentSettings)}
