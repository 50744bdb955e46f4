"""The store's settings (``loader store ...``): one pydantic-settings model, from which come the
``LOADER_*`` variables, the flags, their help and the validation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr, field_validator, model_validator

from loader.envsettings import (
    LoaderSettings,
    Lower,
    Rate,
    Seconds,
    TcpListen,
    as_typed,
    one_of,
)
from loader.settingtypes import LOG_LEVELS, Listen, parse_listen, tls_pair

if TYPE_CHECKING:
    LogLevel = str
else:
    LogLevel = Annotated[one_of(LOG_LEVELS), Lower]

# What says where a store lives: every ``loader store`` command takes these.
LOCATION = ("data_dir", "database_url", "master_key_file")


class StoreSettings(LoaderSettings):
    data_dir: Path | None = Field(None, description="Store directory: loader.db and master.key")
    database_url: SecretStr | None = Field(
        None,
        description="The database, sqlite:///PATH or postgresql://... (overrides the one in "
        "--data-dir; LOADER_DATABASE_URL_FILE may name a file holding it)",
    )
    master_key_file: Path | None = Field(
        None, description="Base64 master key(s), mode 0600 (overrides DIR/master.key)"
    )
    listen: TcpListen = Field("127.0.0.1:8700", description="HOST:PORT; port 0 picks a free one")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS (TLS 1.2+)")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")
    rate_limit: Rate | None = Field(
        None, gt=0, description="Requests per second per token, e.g. 20/s"
    )
    rate_burst: int | None = Field(None, ge=1, description="Burst size per token")
    reveal_rate_limit: float | None = Field(None, gt=0, description="Reveals per second per token")
    write_rate_limit: float | None = Field(None, gt=0, description="Writes per second per token")
    max_long_polls_per_token: int = Field(
        1000,
        ge=1,
        description="Long-polls one token (or OAuth client) may hold at once; 429 past it",
    )
    refusal_rate_limit: Rate = Field(
        as_typed("5/s"),
        gt=0,
        description="Refused requests (401) per second per client address; past it and its "
        "burst, that address gets 429",
    )
    refusal_burst: int = Field(50, ge=1, description="Refusals a client address may burst")
    max_connections_per_client: int = Field(
        256, ge=0, description="Open connections per client address; 429 past it, 0 for no cap"
    )
    header_timeout: Seconds = Field(
        as_typed("10s"),
        ge=0,
        description="Time a connection has to send a request's headers; 0 for none",
    )
    audit_file: Path | None = Field(
        None, description="Also append audit records to this JSON-lines file (SIGHUP reopens it)"
    )
    audit_queue_max: int = Field(
        10_000, ge=10, description="Audit records that may wait to be stored"
    )
    allow_unaudited_reveals: bool = Field(
        False,
        description="Serve reveals even when their audit record cannot be written "
        "(default: refuse them with 503)",
    )
    max_versions: int = Field(10, ge=1, le=1000, description="Versions that keep their value")
    migrate: bool = Field(False, description="Apply pending schema migrations first")
    access_token_ttl: Seconds = Field(
        as_typed("15m"),
        gt=0,
        description="Lifetime of OAuth access tokens",
    )
    jwt_leeway: Seconds = Field(
        as_typed("10s"),
        ge=0,
        le=300,
        description="Clock skew allowed when checking an access token's times",
    )
    jwks_refetch_interval: Seconds = Field(
        as_typed("30s"),
        ge=0,
        le=3600,
        description="Workload identity: a token naming a key the cached JWKS lacks refetches "
        "the issuer's keys at most this often",
    )
    jwks_max_age: Seconds = Field(
        as_typed("5m"),
        gt=0,
        le=86400,
        description="Workload identity: how long an issuer's keys (JWKS) are used before they "
        "are fetched again",
    )
    db_timeout: Seconds = Field(
        as_typed("5s"),
        gt=0,
        le=600,
        description="Longest a database statement may run, then 503",
    )
    db_acquire_timeout: Seconds = Field(
        as_typed("5s"),
        gt=0,
        le=600,
        description="Longest to wait for a database connection, then 503",
    )
    ready_timeout: Seconds = Field(
        as_typed("2s"),
        gt=0,
        le=60,
        description="/v1/ready: longest its database round trip may take",
    )
    min_free_space_mb: int = Field(
        8, ge=0, description="/v1/ready fails below this much free disk, in MiB (SQLite; 0: none)"
    )
    consumer_ttl: Seconds = Field(
        as_typed("150s"),
        ge=10,
        le=86400,
        description="A consumer (agent, runner) not seen for this long is no longer live",
    )
    consumer_flush_interval: Seconds = Field(
        as_typed("2s"),
        gt=0,
        le=60,
        description="Consumer reports are written to the database in a batch this often",
    )
    restart_lease: Seconds = Field(
        as_typed("90s"),
        ge=5,
        le=3600,
        description="A restart slot not renewed or released for this long is free again",
    )
    log_level: LogLevel = Field("info", description="debug|info|warning|error")
    log_file: Path | None = Field(
        None, description="Log to this file instead of stderr; SIGHUP reopens it"
    )

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError("database url must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _safe(self) -> StoreSettings:
        if self.data_dir is None and self.database_url is None:
            raise ValueError(
                "say where the store lives: --data-dir DIR, or both LOADER_DATABASE_URL and "
                "LOADER_MASTER_KEY_FILE"
            )
        if self.data_dir is None and self.master_key_file is None:
            raise ValueError(
                "say which master key opens the store: --master-key-file FILE "
                "(LOADER_MASTER_KEY_FILE), or --data-dir DIR for DIR/master.key"
            )
        tls_pair(self.tls_cert, self.tls_key)
        return self

    @property
    def db_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
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
