"""A small synchronous HTTP/1.1 client over the stdlib, for the CLI and ``loader run``.

Plain sockets over TCP (TLS verified against ``LOADER_CA_FILE`` when given) or a unix socket,
keep-alive; responses are read by :mod:`loader.httpwire`. Not ``http.client``: it imports
``email`` and ``ssl`` and would double the start-up time of every management command. Error
answers become the :mod:`loader.errors` exceptions via ``error_from_response``; a connection
failure is :class:`~loader.errors.ServiceUnavailableError` (exit 69). Tokens go in headers only
and never into messages.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote, urlsplit

from loader.errors import ConfigError, ServiceUnavailableError, error_from_response, tls_failure
from loader.httpwire import Closed, Response, read_response

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any, BinaryIO

# Set by the CLI for LOADER_LOG_LEVEL=debug: each request is logged (method, route template,
# status, time). ``logging`` is imported only then (start-up time of every command).
DEBUG = False


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
        self._sock: socket.socket | None = None
        self._stream: BinaryIO | None = None
        self._port = 0
        if base_url.startswith("unix:"):
            self._unix: str | None = base_url[len("unix:") :]
            self._prefix = ""
            self._host = "localhost"
            self._host_header = "localhost"
            self._scheme = "http"
        else:
            parts = urlsplit(base_url)
            try:
                port = parts.port
            except ValueError:
                port = -1
            if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
                raise ConfigError(
                    "bad setting: the store URL must be http(s)://host[:port] or unix:/path"
                )
            self._unix = None
            self._scheme = parts.scheme
            self._host = parts.hostname
            self._port = port or (443 if parts.scheme == "https" else 80)
            self._host_header = parts.netloc.rpartition("@")[2]
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

    def _connect(self, timeout: float) -> tuple[socket.socket, BinaryIO]:
        if self._sock is None or self._stream is None:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(self._unix)
                except OSError:
                    sock.close()
                    raise
            else:
                # An ASCII host as bytes: a str goes through the idna codec (a few ms to import)
                host = self._host.encode() if self._host.isascii() else self._host
                sock = socket.create_connection((host, self._port), timeout)  # type: ignore[arg-type]
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._ssl is not None:
                    try:
                        sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
                    except OSError:
                        sock.close()
                        raise
            self._sock, self._stream = sock, sock.makefile("rb")
        self._sock.settimeout(timeout)
        return self._sock, self._stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        sent = {
            "Host": self._host_header,
            "Accept": "application/json",
            **self.extra_headers,
            **(headers or {}),
        }
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            sent["Content-Length"] = str(len(data))
        head = f"{method} {self._prefix + path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in sent.items()
        )
        message = head.encode("latin-1") + b"\r\n" + data
        started = time.perf_counter()
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                sock, stream = self._connect(timeout if timeout is not None else self.timeout)
                sock.sendall(message)
                response, keep = read_response(stream, method)
            except (Closed, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 1 and reused:
                    continue  # a kept-alive connection the server had closed: once more
                if isinstance(exc, Closed):
                    raise ServiceUnavailableError(f"{self.where()} closed the connection") from None
                raise self._unreachable(exc) from None
            except (OSError, ValueError) as exc:
                self.close()
                raise self._unreachable(exc) from None
            if not keep:
                self.close()
            if DEBUG:
                _log_request(method, path, response.status, started)
            return response
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> Exception:
        if self._ssl is not None:
            import ssl

            if isinstance(exc, ssl.SSLError):
                return tls_failure(self.where(), str(exc.reason or exc))
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = str(exc) or type(exc).__name__
        return ServiceUnavailableError(f"{self.where()} is unreachable: {reason}")

    def call(self, method: str, path: str, body: Any = None) -> Response:
        """:meth:`request`, with an error answer (anything but 200, 201 or 204) raised as its
        exception (:func:`~loader.errors.error_from_response`)."""
        response = self.request(method, path, body)
        if response.status not in (200, 201, 204):
            raise error_from_response(
                response.status, response.body, response.headers.get("retry-after")
            )
        return response

    def where(self) -> str:
        return self.base_url
