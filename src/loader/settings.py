"""Settings for the long-running commands, from ``LOADER_*`` variables and flags (flags win).

Built once at the entry point (``cli``) and passed down; nothing reads the environment later.
A bad setting becomes one :class:`~loader.errors.ConfigError` line (exit 78) before any network
call.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loader.errors import ConfigError
from loader.names import DEFAULT_ENVIRONMENT, ENV_NAME_MAX, ENV_NAME_PATTERN
from loader.units import parse_duration

LogLevel = Literal["debug", "info", "warning", "error"]
Format = Literal["dotenv", "shell", "docker", "json"]
S = TypeVar("S", bound=BaseSettings)


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


def _duration(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_duration(value)
    return value


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOADER_", extra="ignore", frozen=True)

    log_level: LogLevel = Field("info", description="debug, info, warning or error")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class StoreSettings(_Base):
    data_dir: Path | None = Field(None, description="Directory holding loader.db and master.key")
    database_url: str | None = Field(
        None, description="sqlite:///path/loader.db (default) or postgresql://..."
    )
    master_key_file: Path | None = Field(None, description="Base64 master key(s), mode 0600")
    listen: str = Field("127.0.0.1:8700", description="HOST:PORT (port 0 picks a free one)")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")
    rate_limit: float | None = Field(None, gt=0, description="Requests per second per token")
    rate_burst: int | None = Field(None, ge=1, description="Bucket size per token")
    reveal_rate_limit: float | None = Field(None, gt=0, description="Reveals/s per token")
    write_rate_limit: float | None = Field(None, gt=0, description="Writes/s per token")
    audit_file: Path | None = Field(None, description="Also append audit records here (JSONL)")
    max_versions: int = Field(10, ge=1, le=1000, description="Versions that keep their value")
    migrate: bool = Field(False, description="Apply pending schema migrations at start")
    access_token_ttl: float = Field(900, gt=0, description="Lifetime of OAuth access tokens")

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, str) and value.endswith("/s"):
            return value[:-2]
        return value

    @field_validator("access_token_ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value, allow_unix=False)
        return value

    @model_validator(mode="after")
    def _where(self) -> StoreSettings:
        if self.data_dir is None and (self.database_url is None or self.master_key_file is None):
            raise ValueError(
                "say where the store lives: --data-dir DIR, or both LOADER_DATABASE_URL and "
                "LOADER_MASTER_KEY_FILE"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        url = self.database_url
        if url is not None and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("database url must start with sqlite:/// or postgresql://")
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        assert self.data_dir is not None
        return f"sqlite:///{self.data_dir.resolve() / 'loader.db'}"

    @property
    def key_file(self) -> Path:
        if self.master_key_file is not None:
            return self.master_key_file
        assert self.data_dir is not None
        return self.data_dir / "master.key"

    @property
    def listen_address(self) -> Listen:
        return parse_listen(self.listen, allow_unix=False)


class AgentSettings(_Base):
    store_url: str = Field(description="The store, e.g. http://loader-store:8700")
    token: SecretStr | None = Field(None, description="Bearer token (prefer --token-file)")
    token_file: Path | None = Field(None, description="File holding the token; re-read on change")
    app: int = Field(ge=1, description="App id")
    environment: str = Field(DEFAULT_ENVIRONMENT, pattern=ENV_NAME_PATTERN, max_length=ENV_NAME_MAX)
    output: Path | None = Field(None, description="Env file to write")
    format: Format = Field("dotenv", description="Env file format")
    template: Path | None = Field(None, description="Template with ${secrets:NAME} references")
    template_output: Path | None = Field(None, description="Where the rendered template goes")
    template_format: Literal["auto", "yaml", "json", "text"] = Field(
        "auto", description="How to treat the template (auto: by file extension)"
    )
    names: str | None = Field(None, description="Only these secrets (comma-separated)")
    listen: str = Field(
        "127.0.0.1:8701",
        description="Local endpoint: 127.0.0.1:PORT, [::1]:PORT, unix:/path or off",
    )
    allow_disk: bool = Field(False, description="Allow writing secrets to a disk filesystem")
    on_change: str | None = Field(None, description="Command run after each re-render")
    max_stale: float | None = Field(None, gt=0, description="Readiness fails past this age")
    ca_file: Path | None = Field(None, description="CA bundle to verify the store's TLS")
    wait: float = Field(30, gt=0, le=60, description="Long-poll hold, seconds")
    backoff_initial: float = Field(0.2, gt=0, description="First retry delay, seconds")
    backoff_max: float = Field(30, gt=0, description="Retry delay cap, seconds")
    timeout: float = Field(30, gt=0, description="render --once: give up after this long")

    @field_validator(
        "max_stale", "wait", "backoff_initial", "backoff_max", "timeout", mode="before"
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("store url must be http(s)://host[:port]")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if self.token is None and self.token_file is None:
            raise ValueError("a token is required: LOADER_TOKEN_FILE (or LOADER_TOKEN)")
        if self.output is None and self.template is None:
            raise ValueError("nothing to render: set --output and/or --template")
        if (self.template is None) != (self.template_output is None):
            raise ValueError("--template and --template-output go together")
        if self.listen not in ("off", "none", ""):
            address = parse_listen(self.listen)
            if not is_loopback(address):
                raise ValueError(
                    f"refusing to listen on {self.listen}: the local endpoint binds only to "
                    "loopback (127.0.0.1, ::1) or a unix socket"
                )
        return self

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


def load(cls: type[S], **flags: Any) -> S:
    """Build settings from the environment plus the flags given (``None`` flags are absent)."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        setting = f"LOADER_{where.upper()} / --{where.replace('_', '-')}: " if where else ""
        raise ConfigError(f"bad setting: {setting}{message}") from None
