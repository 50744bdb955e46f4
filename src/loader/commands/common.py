"""Helpers the command modules share: logging, output, signals, client settings."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.errors import ConfigError, UsageError
from loader.httpclient import HttpClient
from loader.units import parse_duration

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def setup_logging(level: str | None) -> None:
    name = (level or env("LOADER_LOG_LEVEL", "info") or "info").lower()
    if name not in LEVELS:
        raise ConfigError(f"bad setting: LOADER_LOG_LEVEL must be one of {', '.join(LEVELS)}")
    logging.basicConfig(
        level=LEVELS[name],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if name != "debug":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("loader.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_quiet_malformed_requests)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def _quiet_malformed_requests(record: logging.LogRecord) -> bool:
    """A client's malformed HTTP is its problem: one INFO line, not an ERROR with a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    status = getattr(exc, "code", None)
    if exc is not None and isinstance(status, int) and 400 <= status < 500:
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "refused a malformed HTTP request (%s)", (type(exc).__name__,)
        record.exc_info = record.exc_text = None
    return True


def add_log_level(parser: Any) -> None:
    parser.add_argument(
        "--log-level",
        choices=sorted(LEVELS),
        default=None,
        help="debug|info|warning|error (LOADER_LOG_LEVEL; default info)",
    )


def duration(text: str, what: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class ClientConfig:
    """Where the management commands and ``run`` find the store, and how they authenticate."""

    store_url: str
    token: str | None
    ca_file: str | None

    def client(self, timeout: float = 30.0) -> HttpClient:
        if self.token is None:
            raise ConfigError(
                "no token: set LOADER_TOKEN or LOADER_TOKEN_FILE (or pass --token-file)"
            )
        return HttpClient(self.store_url, token=self.token, ca_file=self.ca_file, timeout=timeout)


def read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def add_client_options(parser: Any) -> None:
    parser.add_argument(
        "--store-url",
        default=None,
        help="Store URL (LOADER_STORE_URL; default http://127.0.0.1:8700)",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="File holding the token (LOADER_TOKEN_FILE; or set LOADER_TOKEN)",
    )
    parser.add_argument(
        "--ca-file", default=None, help="CA bundle for an https store (LOADER_CA_FILE)"
    )


def client_config(ns: Any) -> ClientConfig:
    token_file = ns.token_file or env("LOADER_TOKEN_FILE")
    token = read_token_file(token_file) if token_file else env("LOADER_TOKEN")
    return ClientConfig(
        store_url=ns.store_url or env("LOADER_STORE_URL", "http://127.0.0.1:8700") or "",
        token=token,
        ca_file=ns.ca_file or env("LOADER_CA_FILE"),
    )
