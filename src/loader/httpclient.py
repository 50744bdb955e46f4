"""A small synchronous HTTP client over the stdlib, for the CLI and ``loader run``.

``http.client`` over TCP (with TLS verified against ``LOADER_CA_FILE`` when given) or a unix
socket. Error answers become the :mod:`loader.errors` exceptions via ``error_for_status``; a
connection failure is :class:`~loader.errors.ServiceUnavailableError` (exit 69). Tokens go in
headers only and never into messages.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from loader.errors import ConfigError, ServiceUnavailableError, error_for_status, tls_failure

if TYPE_CHECKING:
    import ssl

# Set by the CLI for LOADER_LOG_LEVEL=debug: each request is logged (method, route template,
# status, time). ``logging`` is imported only then (start-up time of every command).
DEBUG = False


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def path_quote(segment: str) -> str:
    return quote(segment, safe="")


def _log_request(method: str, path: str, status: int, started: float) -> None:
    import logging

    logging.getLogger("loader.http").debug(
        "%s %s -> %d in %.1f ms",
        method,
        route_template(path),
        status,
        (time.perf_counter() - started) * 1000,
    )


def route_template(path: str) -> str:
    """A request path as a route template for logs: ``/v1/apps/{id}/.../secrets/{name}``.
    Names and query values never reach a log line (a value may sit where a name goes)."""
    parts = path.split("?", 1)[0].split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        before = parts[i - 1] if i else ""
        if before == "apps":
            out.append("{appId}")
        elif before == "environments":
            out.append("{env}")
        elif before == "secrets":
            out.append("{secretName}")
        else:
            out.append(part)
    return "/".join(out)


class HttpClient:
    """One base URL (``http(s)://host[:port]`` or ``unix:/path.sock``), keep-alive."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.extra_headers = headers or {}
        self._conn: http.client.HTTPConnection | None = None
        if base_url.startswith("unix:"):
            self._unix: str | None = base_url[len("unix:") :]
            self._prefix = ""
            self._host = "localhost"
            self._scheme = "http"
            self._port: int | None = None
        else:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    "bad setting: the store URL must be http(s)://host[:port] or unix:/path"
                )
            self._unix = None
            self._scheme = parts.scheme
            self._host = parts.hostname
            self._port = parts.port
            self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._scheme == "https":
            import ssl  # only for https: it costs a few ms of start-up

            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except OSError as exc:
                raise ConfigError(f"cannot read CA file {ca_file}: {exc.strerror}") from None
            except ssl.SSLError:
                raise ConfigError(f"CA file {ca_file} holds no PEM certificate") from None
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._unix is not None:
                self._conn = _UnixConnection(self._unix, self.timeout)
            elif self._ssl is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._ssl
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        sent = {"Accept": "application/json", **self.extra_headers, **(headers or {})}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        started = time.perf_counter()
        for attempt in (1, 2):
            conn = self._connection()
            if timeout is not None:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                conn.request(method, self._prefix + path, body=data, headers=sent)
                raw = conn.getresponse()
                payload = raw.read()
                if DEBUG:
                    _log_request(method, path, raw.status, started)
                return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, payload)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise ServiceUnavailableError(f"{self.where()} closed the connection") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if self._ssl is not None:
                    import ssl

                    if isinstance(exc, ssl.SSLError):
                        raise tls_failure(self.where(), str(exc.reason or exc)) from None
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ServiceUnavailableError(
                    f"{self.where()} is unreachable: {reason or type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Response:
        response = self.request(method, path, body, headers)
        if response.status not in ok:
            raise_for(response)
        return response

    def where(self) -> str:
        return self.base_url


def raise_for(response: Response) -> None:
    message, code = f"HTTP {response.status}", None
    try:
        data = response.json()
        if isinstance(data, dict):
            message = str(data.get("error") or message)
            code = data.get("code")
    except ValueError:
        pass
    retry_after = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    raise error_for_status(response.status, message, code, retry_after)
