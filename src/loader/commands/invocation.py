"""What a command runs in: its logging (stderr or a reopening file), and for the management
commands the store they talk to (URL, token, CA), the app and environment they act on, and
the confirmation a deletion needs. (Output is :mod:`loader.output`'s.)

Light on purpose (``loader secrets list`` imports it): ``logging`` only when logging is set up.
"""

from __future__ import annotations

import os
import sys

from loader import httpclient
from loader.durations import parse_duration
from loader.errors import (
    ConfigError,
    InsufficientScopeError,
    UsageError,
)
from loader.fsguard import read_token_file
from loader.httpclient import HttpClient, path_quote
from loader.names import DEFAULT_ENVIRONMENT, check_environment_name
from loader.settingtypes import LOG_LEVELS, TOKEN, Choice, Option, add_options, boolean

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

# The management commands' settings (apps, envs, secrets, audit): each is also LOADER_<NAME>,
# the flag wins. The token comes from LOADER_TOKEN or --token-file, never a flag.
CLIENT: tuple[Option, ...] = (
    Option("--store-url", "Store URL", "URL", default="http://127.0.0.1:8700"),
    Option("--token-file", "File holding the token (or set LOADER_TOKEN)", "FILE"),
    Option("--ca-file", "CA bundle for an https store", "FILE"),
    Option("--app", "App name or id", "APP"),
    Option("--env", "Environment", "ENV", default=DEFAULT_ENVIRONMENT, dest="environment"),
    Option("--allow-disk", "Allow writing outside tmpfs/ramfs"),
    Option("--log-level", "debug|info|warning|error", "LEVEL", default="info", choices=LOG_LEVELS),
)
_CLIENT = {o.dest: o for o in CLIENT}
_LEVEL = Choice(LOG_LEVELS, lower=True)


def setting(ns: Any, dest: str) -> str | None:
    """A management command's setting: its flag, else its variable, else its default."""
    option = _CLIENT[dest]
    return getattr(ns, dest, None) or os.environ.get(option.env) or option.default


def add_settings(parser: Any, *dests: str) -> None:
    add_options(parser, (_CLIENT[d] for d in dests))


def log_level(level: str | None = None) -> str:
    """``level`` (a flag's, or a settings class's), else LOADER_LOG_LEVEL, else info."""
    try:
        return _LEVEL(level or setting(None, "log_level"))
    except ValueError as exc:
        raise ConfigError(f"bad setting: {_CLIENT['log_level'].env} {exc}") from None


def setup_logging(level: str | None, log_file: Path | None = None) -> Callable[[], None]:
    """Log to stderr, or to ``log_file`` (0600, appended). Returns what SIGHUP should call
    (reopen the file after a rotation)."""
    import logging

    name = log_level(level)
    handler: logging.Handler
    reopen: Callable[[], None] = _nothing
    if log_file is not None:
        from loader.logfile import ReopeningFileHandler

        try:
            os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            handler = file_handler = ReopeningFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {log_file}: {exc.strerror}") from None
        reopen = file_handler.reopen
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(
        level=getattr(logging, name.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    if name != "debug":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("loader.access").setLevel(logging.WARNING)
    else:
        httpclient.DEBUG = True
    logging.getLogger("aiohttp.server").addFilter(_quiet_malformed_requests)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    return reopen


def _nothing() -> None:
    return None


def setup_client_logging() -> None:
    """The management commands log only at debug (each request and decision, never a value);
    nothing is imported for it otherwise."""
    if log_level() == "debug":
        setup_logging("debug")


def debug(message: str, *args: object) -> None:
    """A decision worth seeing at LOADER_LOG_LEVEL=debug (names and ids only)."""
    if httpclient.DEBUG:
        import logging

        logging.getLogger("loader.cli").debug(message, *args)


def _quiet_malformed_requests(record: logging.LogRecord) -> bool:
    """A client's malformed HTTP is its problem: one INFO line, not an ERROR with a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    status = getattr(exc, "code", None)
    if exc is not None and isinstance(status, int) and 400 <= status < 500:
        record.levelno, record.levelname = 20, "INFO"
        record.msg, record.args = "refused a malformed HTTP request (%s)", (type(exc).__name__,)
        record.exc_info = record.exc_text = None
    return True


def duration(text: str, what: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


class ClientConfig:
    """Where the management commands find the store, and how they authenticate. (A plain
    class: ``dataclasses`` costs every command a few ms of start-up.)"""

    __slots__ = ("ca_file", "store_url", "token")

    def __init__(self, store_url: str, token: str | None, ca_file: str | None) -> None:
        self.store_url, self.token, self.ca_file = store_url, token, ca_file

    def client(self, timeout: float = 30.0) -> HttpClient:
        if self.token is None:
            raise ConfigError(
                "no token: set LOADER_TOKEN or LOADER_TOKEN_FILE (or pass --token-file)"
            )
        return HttpClient(self.store_url, token=self.token, ca_file=self.ca_file, timeout=timeout)


def add_client_options(parser: Any) -> None:
    add_settings(parser, "store_url", "token_file", "ca_file")


def add_command_options(parser: Any, *, app: bool = True, environment: bool = True) -> None:
    """The options of a command on an app's environment over HTTP: --app (unless ``app`` is
    false), --env (unless either is false), --json and the client options."""
    if app:
        add_settings(parser, "app")
    if environment and app:
        add_settings(parser, "environment")
    parser.add_argument("--json", action="store_true", help="Print JSON")
    add_client_options(parser)


def client_config(ns: Any) -> ClientConfig:
    token_file = setting(ns, "token_file")
    token = read_token_file(token_file) if token_file else os.environ.get(TOKEN) or None
    config = ClientConfig(
        store_url=setting(ns, "store_url") or "",
        token=token,
        ca_file=setting(ns, "ca_file"),
    )
    setup_client_logging()
    debug(
        "store %s; token from %s",
        config.store_url,
        "--token-file/LOADER_TOKEN_FILE" if token_file else "LOADER_TOKEN",
    )
    return config


# -- the app and environment a command acts on -----------------------------------------------


def raw_app(ns: Any) -> str:
    raw = setting(ns, "app")
    if raw is None:
        raise ConfigError("which app? pass --app NAME|ID or set LOADER_APP")
    return str(raw).strip()


def resolve_app(client: HttpClient, raw: str) -> int:
    """An app id as given, or the id of the app with that name (all digits is an id)."""
    if raw.isascii() and raw.isdigit():
        app = int(raw)
        if app < 1:
            raise ConfigError("bad setting: LOADER_APP / --app: app ids start at 1")
        return app
    from loader.names import APP_LOOKUP_SCOPE, find_app

    try:
        apps = client.call("GET", "/v1/apps").json()["apps"]
    except InsufficientScopeError:
        raise InsufficientScopeError(f"--app: {APP_LOOKUP_SCOPE}") from None
    app_id = find_app(apps, raw)
    debug("app name resolved to id %d", app_id)
    return app_id


def environment_name(ns: Any) -> str:
    return check_environment_name(setting(ns, "environment") or "")


def allow_disk(ns: Any) -> bool:
    try:
        return boolean(setting(ns, "allow_disk") or "")
    except ValueError as exc:
        raise ConfigError(f"bad setting: {_CLIENT['allow_disk'].env} {exc}") from None


class Target:
    """A management command's client, app and environment (the app resolved once)."""

    def __init__(self, ns: Any) -> None:
        self.ns = ns
        self.client = client_config(ns).client()
        self._app: int | None = None

    @property
    def app(self) -> int:
        if self._app is None:
            self._app = resolve_app(self.client, raw_app(self.ns))
        return self._app

    @property
    def environment(self) -> str:
        return environment_name(self.ns)

    def app_path(self, suffix: str = "") -> str:
        return f"/v1/apps/{self.app}{suffix}"

    def env_path(self, suffix: str = "") -> str:
        return self.app_path(f"/environments/{path_quote(self.environment)}{suffix}")

    def secrets_path(self, name: str | None = None) -> str:
        return self.env_path("/secrets" + (f"/{path_quote(name)}" if name is not None else ""))

    def where(self) -> str:
        return f"app {self.app} / {self.environment}"


def confirm(ns: Any, question: str) -> None:
    """Ask on a terminal; elsewhere ``--yes`` is required (nothing is deleted unasked)."""
    if getattr(ns, "yes", False):
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{question.rstrip('?')}: refusing without --yes (stdin is not a terminal)"
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not confirmed; nothing changed")
