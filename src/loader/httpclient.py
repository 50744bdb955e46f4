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
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from loader.errors import InvalidRequestError, ServiceUnavailableError, error_for_status


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
                raise InvalidRequestError(
                    f"bad URL {base_url!r}: expected http(s)://host[:port] or unix:/path"
                )
            self._unix = None
            self._scheme = parts.scheme
            self._host = parts.hostname
            self._port = parts.port
            self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._scheme == "https":
            self._ssl = ssl.create_default_context(cafile=ca_file)
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
                return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, payload)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise ServiceUnavailableError(f"{self.where()} closed the connection") from None
            except ssl.SSLError as exc:
                self.close()
                raise ServiceUnavailableError(
                    f"TLS handshake with {self.where()} failed: {exc.reason or exc}"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
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
