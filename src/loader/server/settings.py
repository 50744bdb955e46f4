"""The store's settings (``loader store serve``), from ``LOADER_*`` variables and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from loader.envsettings import EnvSettings, duration
from loader.settings import Listen, parse_listen

LogLevel = Literal["debug", "info", "warning", "error"]


class StoreSettings(EnvSettings):
    log_level: LogLevel = Field("info", description="debug, info, warning or error")
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
    jwt_leeway: float = Field(
        10, ge=0, le=300, description="Clock skew allowed when checking an access token's times"
    )
    db_timeout: float = Field(
        5, gt=0, le=600, description="Longest a database statement may run, then 503"
    )
    db_acquire_timeout: float = Field(
        5, gt=0, le=600, description="Longest to wait for a database connection, then 503"
    )
    ready_timeout: float = Field(
        2, gt=0, le=60, description="/v1/ready: longest its database round trip may take"
    )
    min_free_space_mb: int = Field(
        8, ge=0, description="/v1/ready fails below this much free disk (SQLite; 0: no check)"
    )
    audit_queue_max: int = Field(
        10_000, ge=10, description="Audit records that may wait to be stored"
    )
    allow_unaudited_reveals: bool = Field(
        False, description="Serve reveals even when their audit record cannot be written"
    )
    log_file: Path | None = Field(None, description="Log here instead of stderr (SIGHUP reopens)")
    max_long_polls_per_token: int = Field(
        1000, ge=1, description="Long-polls one token (or OAuth client) may hold at once"
    )
    refusal_rate_limit: float = Field(
        5, gt=0, description="Refused requests (401) per second per client address"
    )
    refusal_burst: int = Field(50, ge=1, description="Refusals one client address may burst")
    max_connections_per_client: int = Field(
        256, ge=0, description="Open connections per client address (0: no cap)"
    )
    header_timeout: float = Field(
        10, ge=0, description="Seconds a connection has to send a request's headers (0: none)"
    )

    @field_validator(
        "access_token_ttl",
        "jwt_leeway",
        "db_timeout",
        "db_acquire_timeout",
        "ready_timeout",
        "header_timeout",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return duration(value)

    @field_validator("rate_limit", "refusal_rate_limit", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, str) and value.endswith("/s"):
            return value[:-2]
        return value

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
