"""The base of the store's and the webhook's settings: pydantic-settings models, processes that
load pydantic for their request bodies anyway.

From one model come the ``<prefix><FIELD>`` variables (any case), the flags (``--field-name``,
help from the field's description, choices from a ``Literal``), the validation and the one-line
error. Where a value comes from, strongest first: the flag, the variable, for a secret
(``SecretStr``) field the file named by ``<prefix><FIELD>_FILE`` (a Kubernetes Secret mounted as
a volume), the default. Schemas are built on first use (``defer_build``), so a process pays only
for the settings it builds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from loader.errors import ConfigError
from loader.settingtypes import (
    FILE_SUFFIX,
    PREFIX,
    SettingError,
    bad_setting,
    duration,
    env_name,
    flag_name,
    help_line,
    parse_listen,
)

M = TypeVar("M", bound="LoaderSettings")

# The variables a model reads while `from_environ` builds it (os.environ otherwise).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("loader_settings_environ", default=None)


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


def _duration(value: Any) -> Any:
    value = _none_if_empty(value)
    return duration(value) if isinstance(value, str) else value


def _rate(value: Any) -> Any:
    return value[:-2] if isinstance(value, str) and value.endswith("/s") else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# Field types that read what people type: "30s"/"5m" durations, "20/s" rates, levels in any case.
Seconds = Annotated[float, BeforeValidator(_duration)]
Rate = Annotated[float, BeforeValidator(_rate)]
Lower = BeforeValidator(_lower)


def _tcp_listen(value: str) -> str:
    parse_listen(value, allow_unix=False)
    return value


# HOST:PORT for a server (the store, the webhook) to listen on: TCP only, no unix: socket.
TcpListen = Annotated[str, AfterValidator(_tcp_listen)]


def as_typed(text: str) -> Any:
    """A default written as a user types it (``"5s"``, ``"5/s"``): the help shows it so, and
    it is read like a variable's text."""
    return text


def one_of(choices: tuple[str, ...]) -> Any:
    """``Literal[<choices>]`` from a tuple of :mod:`loader.settingtypes` (the one list)."""
    return Literal[choices]


class LoaderSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        defer_build=True,
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _environ()
        if isinstance(env_settings, EnvSettingsSource):
            env_settings.env_vars = environ
        given = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        return init_settings, env_settings, SecretFiles(settings_cls, environ, set(given))

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", PREFIX))

    @classmethod
    def from_environ(cls: type[M], environ: Mapping[str, str], **given: Any) -> M:
        """Build from ``environ`` plus ``given`` (the flags: they win); a bad setting is one
        :class:`~loader.errors.ConfigError` line naming the variable and the flag."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**given)
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            error = SettingError(field, "required" if err["type"] == "missing" else message)
            raise bad_setting(error, cls.prefix()) from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def env_names(cls) -> set[str]:
        """Every variable the model reads (secret fields also as ``..._FILE``)."""
        prefix = cls.prefix()
        names = {env_name(name, prefix) for name in cls.model_fields}
        return names | {env_name(name, prefix) + FILE_SUFFIX for name in secret_fields(cls)}


def _environ() -> dict[str, str]:
    environ = _ENVIRON.get()
    return {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}


def secret_fields(model: type[BaseSettings]) -> list[str]:
    return [name for name, field in model.model_fields.items() if _is(field, SecretStr)]


class SecretFiles(PydanticBaseSettingsSource):
    """``LOADER_DATABASE_URL_FILE=/run/secrets/db/url``: a secret setting read from a file (a
    mounted Kubernetes Secret, a Docker secret), for each ``SecretStr`` field. Setting both the
    variable and its ``_FILE`` is refused; a flag wins over both (its file is not read)."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str], given: set[str]
    ) -> None:
        super().__init__(settings_cls)
        self.environ, self.given = environ, given

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", PREFIX))
        found: dict[str, Any] = {}
        for name in secret_fields(self.settings_cls):
            if name in self.given:
                continue
            variable = env_name(name, prefix)
            path = self.environ.get((variable + FILE_SUFFIX).lower())
            if not path:
                continue
            if self.environ.get(variable.lower()):
                raise ConfigError(
                    f"bad setting: set {variable} or {variable}{FILE_SUFFIX}, not both"
                )
            found[name] = read_secret_file(variable + FILE_SUFFIX, path)
        return found


def read_secret_file(variable: str, path: str) -> str:
    """The file's text without its final newline; its content is never shown in an error."""
    from loader.fsguard import MAX_TOKEN_FILE, read_trusted

    try:
        data = read_trusted(path, MAX_TOKEN_FILE)
    except OSError as exc:
        raise ConfigError(f"bad setting: {variable}: cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"bad setting: {variable}: {path} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"bad setting: {variable}: {path} is empty")
    return text


# -- flags ---------------------------------------------------------------------------------


def add_flags(parser: Any, model: type[LoaderSettings], names: Iterable[str] | None = None) -> None:
    """``--field-name`` for each field of ``model`` (or of ``names``): the description as help
    with the variable and the default, choices from a ``Literal``, a switch for a ``bool``.
    Every flag defaults to None: absent, so the variable or the default applies."""
    fields = model.model_fields
    prefix = model.prefix()
    for name in fields if names is None else names:
        field = fields[name]
        default = field.default
        shown = None if default in (None, False, "") else str(default)
        help_text = help_line(field.description or "", env_name(name, prefix), shown)
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        choices = _choices(field)
        if choices:
            kwargs["choices"] = choices
        elif _is(field, bool):
            kwargs["action"] = "store_true"
        elif not _converts(field):
            for kind in (int, float):
                if _is(field, kind):
                    kwargs["type"] = kind
        parser.add_argument(flag_name(name), **kwargs)


def flags_given(ns: Any, model: type[LoaderSettings]) -> dict[str, Any]:
    """The flags of ``model`` that were given on the command line."""
    return {
        name: value for name in model.model_fields if (value := getattr(ns, name, None)) is not None
    }


def _types(field: FieldInfo) -> tuple[Any, ...]:
    """The field's types, without None and without ``Annotated`` wrappers."""
    annotation = field.annotation
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    kinds = tuple(a for a in args if a is not type(None)) or (annotation,)
    return tuple(get_args(k)[0] if get_origin(k) is Annotated else k for k in kinds)


def _is(field: FieldInfo, kind: type) -> bool:
    return any(t is kind for t in _types(field))


def _choices(field: FieldInfo) -> list[str] | None:
    for t in _types(field):
        if get_origin(t) is Literal:
            return [str(a) for a in get_args(t)]
    return None


def _converts(field: FieldInfo) -> bool:
    """A field with its own text reader (a duration, a rate): the flag passes text."""
    annotation = field.annotation
    inner = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    metadata = [*field.metadata, *(m for k in inner for m in getattr(k, "__metadata__", ()))]
    return any(isinstance(m, BeforeValidator) for m in metadata)
