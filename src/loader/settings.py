"""The agent's settings (``loader agent`` and ``loader render --once``): one dataclass whose
fields are the table. Each field's line declares its type, its default (as typed), its parser,
its help text and which command takes it as a flag; from them come the ``LOADER_*`` variables,
the flags and their help, the parsing and the one-line errors. The flag wins over the variable.

Built once at the entry point and passed down; nothing reads the environment later. A bad
setting is one :class:`~loader.errors.ConfigError` line (exit 78) before any network call.

Stdlib only: the sidecar's memory is mostly its imports, and pydantic (the store's settings
library) would add about 8 MiB to it. The choices and parsers it shares with the store's and the
runner's settings come from :mod:`loader.settingtypes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from loader.names import DEFAULT_ENVIRONMENT, ENV_NAME_MAX, ENV_NAME_PATTERN
from loader.settingtypes import (
    FORMATS,
    LOG_LEVELS,
    OFF,
    RESTART_POLICIES,
    TEMPLATE_FORMATS,
    TEMPLATE_SPELLINGS,
    Choice,
    Listen,
    SettingError,
    bad_setting,
    boolean,
    env_name,
    flag_name,
    help_line,
    http_url,
    parse_listen,
    seconds,
    template_targets,
)
from loader.workload import AUTH_MODES, DEFAULT_JWT_FILE

Parser = Callable[[Any], Any]
AGENT, RENDER = "agent", "render"
BOTH = (AGENT, RENDER)


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


# -- field parsers: a flag's value (maybe typed) or a variable's text -> the value ------------


def text(value: Any) -> str:
    return str(value)


def path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(str(value))


def secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value))


def many(value: Any) -> tuple[str, ...]:
    """A repeatable flag's values (a list), or one value (a variable's text, a path)."""
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(str(item) for item in items)


def optional(parse: Parser) -> Parser:
    def one(value: Any) -> Any:
        return None if value is None or value == "" else parse(value)

    return one


def at_most(maximum: float) -> Parser:
    def one(value: Any) -> float:
        return seconds(value, maximum=maximum)

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


# -- one field's declaration -------------------------------------------------------------------


class Row:
    """What a field's line says besides its name and type."""

    __slots__ = ("aliases", "commands", "default", "parse", "repeat", "text")

    def __init__(
        self,
        parse: Parser,
        text: str,
        default: str | None,
        commands: tuple[str, ...],
        aliases: tuple[str, ...],
        repeat: bool = False,
    ) -> None:
        self.parse, self.text, self.default = parse, text, default
        self.commands, self.aliases, self.repeat = commands, aliases, repeat


def setting(
    parse: Parser,
    text: str = "",
    *,
    default: str | None = None,
    required: bool = False,
    commands: tuple[str, ...] = BOTH,
    aliases: tuple[str, ...] = (),
    repeat: bool = False,
) -> Any:
    """A field: ``default`` is written as a user would type it (``"30s"``) and parsed like a
    variable; ``commands`` take it as a flag (none: a variable only), ``repeat``: many times."""
    row = Row(parse, text, default, commands, aliases, repeat)
    if required:
        return field(metadata={"row": row})
    return field(default=None if default is None else parse(default), metadata={"row": row})


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """``loader agent`` and ``loader render --once``."""

    store_url: str = setting(http_url, "The store, e.g. http://loader-store:8700", required=True)
    token: Secret | None = setting(optional(secret), commands=())  # argv shows in `ps`
    token_file: Path | None = setting(
        optional(path), "File holding the token, re-read when it changes (or set LOADER_TOKEN)"
    )
    auth: str = setting(
        Choice(AUTH_MODES, lower=True),
        "token: LOADER_TOKEN(_FILE); jwt: trade the workload's JWT (LOADER_JWT_FILE) at the "
        "store for access tokens",
        default="token",
    )
    jwt_file: Path = setting(
        path,
        "LOADER_AUTH=jwt: the workload's JWT, re-read as it rotates (a projected "
        "service-account token)",
        default=DEFAULT_JWT_FILE,
    )
    app: int | str = setting(app_id_or_name, "App name or id", required=True)
    environment: str = setting(
        matching(ENV_NAME_PATTERN, ENV_NAME_MAX),
        "Environment",
        default=DEFAULT_ENVIRONMENT,
        aliases=("--env",),
    )
    output: Path | None = setting(optional(path), "Env file to write")
    format: str = setting(Choice(FORMATS), "Env file format", default="dotenv")
    template: tuple[str, ...] | None = setting(
        optional(many),
        "Spicepod or any text file with $<secrets:NAME>, as SRC:DEST; repeatable",
        repeat=True,
    )
    template_output: Path | None = setting(optional(path), "Where a single --template SRC renders")
    template_format: str = setting(
        Choice(TEMPLATE_FORMATS), "Template syntax (auto: each file by extension)", default="auto"
    )
    template_spelling: str = setting(
        Choice(TEMPLATE_SPELLINGS),
        "References loader fills in: angle $<secrets:N>, brace ${secrets:N}, both; auto: "
        "angle when the template has one, else brace",
        default="auto",
    )
    names: str | None = setting(optional(text), "Only these secrets, comma-separated")
    allow_disk: bool = setting(
        boolean, "Allow writing secrets outside tmpfs/ramfs", default="false"
    )
    ca_file: Path | None = setting(optional(path), "CA bundle for an https store")
    listen: str = setting(
        text,
        "Local endpoint: 127.0.0.1:PORT, [::1]:PORT, unix:/path.sock or off",
        default="127.0.0.1:8701",
        commands=(AGENT,),
    )
    on_change: str | None = setting(
        optional(text),
        "Command run after a re-render that needs it, e.g. 'kill -HUP 1'",
        commands=(AGENT,),
    )
    restart: str = setting(
        Choice(RESTART_POLICIES),
        "When --on-change runs: auto (unless only spicepod dataset/model/catalog params "
        "changed), always, never",
        default="auto",
        commands=(AGENT,),
    )
    max_stale: float | None = setting(
        optional(seconds), "/readyz fails when the data is older, e.g. 5m", commands=(AGENT,)
    )
    wait: float = setting(
        at_most(60), "Long-poll hold, at most 60s", default="30s", commands=(AGENT,)
    )
    timeout: float = setting(seconds, "Give up after this long", default="30s", commands=(RENDER,))
    backoff_initial: float = setting(seconds, default="0.2s", commands=())
    backoff_max: float = setting(seconds, default="30s", commands=())
    log_level: str = setting(
        Choice(LOG_LEVELS, lower=True), "debug|info|warning|error", default="info"
    )
    log_file: Path | None = setting(
        optional(path),
        "Log to this file instead of stderr; SIGHUP reopens it",
        commands=(AGENT,),
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **given: Any) -> AgentSettings:
        """Each field from its flag (given) or its variable (any case), through its parser."""
        upper = {key.upper(): value for key, value in environ.items()}
        values: dict[str, Any] = {}
        try:
            for name, row, required in rows():
                raw = given[name] if name in given else upper.get(env_name(name))
                if raw is None:
                    if required:
                        raise SettingError(name, "required")
                    continue
                try:
                    values[name] = row.parse(raw)
                except ValueError as exc:
                    raise SettingError(name, str(exc)) from None
            return cls(**values)
        except SettingError as exc:
            raise bad_setting(exc) from None

    def __post_init__(self) -> None:
        if self.auth == "token" and self.token is None and self.token_file is None:
            raise SettingError(
                "", "a token is required: LOADER_TOKEN_FILE (or LOADER_TOKEN, or LOADER_AUTH=jwt)"
            )
        if self.output is None and self.template is None:
            raise SettingError("", "nothing to render: set --output and/or --template")
        try:
            self.template_targets  # noqa: B018 - checked here, used by the agent
        except ValueError as exc:
            raise SettingError("template", str(exc)) from None
        if self.listen not in OFF:
            try:
                address = parse_listen(self.listen)
            except ValueError as exc:
                raise SettingError("listen", str(exc)) from None
            if not address.is_loopback:
                raise SettingError(
                    "listen",
                    f"refusing to listen on {self.listen}: the local endpoint binds only to "
                    "loopback (127.0.0.1, ::1) or a unix socket",
                )

    @property
    def listen_address(self) -> Listen | None:
        if self.listen in OFF:
            return None
        return parse_listen(self.listen)

    @property
    def name_filter(self) -> list[str] | None:
        if not self.names:
            return None
        return [n.strip() for n in self.names.split(",") if n.strip()]

    @property
    def template_targets(self) -> list[tuple[str, str]]:
        """``(source, destination)`` of each template."""
        if self.template is None:
            if self.template_output is not None:
                raise ValueError("--template-output goes with one --template SRC")
            return []
        return template_targets(self.template, self.template_output)


def rows() -> Iterator[tuple[str, Row, bool]]:
    """``(name, row, required)`` for each field, in declaration order."""
    for f in fields(AgentSettings):
        yield f.name, f.metadata["row"], f.default is MISSING


def env_names() -> set[str]:
    return {env_name(name) for name, _, _ in rows()}


def add_flags(parser: Any, command: str) -> None:
    """The flags ``command`` (agent or render) takes, each defaulting to None (absent)."""
    for name, row, _ in rows():
        if command not in row.commands:
            continue
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": None,
            "help": help_line(row.text, env_name(name), row.default),
        }
        if isinstance(row.parse, Choice):
            kwargs["choices"] = list(row.parse.options)
        elif row.parse is boolean:
            kwargs["action"] = "store_true"
            kwargs["help"] = help_line(row.text, env_name(name))
        elif row.repeat:
            kwargs["action"] = "append"
        parser.add_argument(flag_name(name), *row.aliases, **kwargs)


def flags_given(ns: Any) -> dict[str, Any]:
    return {name: value for name, _, _ in rows() if (value := getattr(ns, name, None)) is not None}
