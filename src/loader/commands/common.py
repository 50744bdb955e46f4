"""Helpers the command modules share: logging, output, signals, client settings."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.errors import ConfigError
from loader.httpclient import HttpClient

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


def add_log_level(parser: Any) -> None:
    parser.add_argument(
        "--log-level",
        choices=sorted(LEVELS),
        default=None,
        help="debug|info|warning|error (LOADER_LOG_LEVEL; default info)",
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def until_signalled() -> signal.Signals:
    """Wait for SIGTERM or SIGINT; a second SIGINT exits at once."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if got.done():
            if sig == signal.SIGINT:
                os._exit(130)
            return
        got.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await got
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


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
