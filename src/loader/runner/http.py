"""A minimal HTTP/1.1 GET over TCP or a unix socket, sync (the exec path: stdlib ``socket``
only) and async (supervise mode: asyncio streams, cancellable, TLS for the store).

Each request uses its own connection (``Connection: close``); the response is parsed by
:mod:`loader.httpwire`, as the CLI's client parses its own. Failures to connect are
:class:`~loader.errors.UnreachableError`, a timeout or a garbled answer
:class:`~loader.errors.ServiceUnavailableError` (both exit 69).
Over a unix socket the server must run as this user or root (``SO_PEERCRED``): an impostor that
bound the path first is a :class:`~loader.errors.ConfigError` (exit 78). Responses are bounded.
"""

from __future__ import annotations

from loader.errors import ServiceUnavailableError, UnreachableError, nobody_listening, tls_failure
from loader.fsguard import MAX_DATA_FILE, check_peer
from loader.httpwire import MAX_HEAD, Closed, Response, read_response

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


# A response carries at most what an env file may hold, plus its headers.
MAX_RESPONSE = MAX_DATA_FILE + MAX_HEAD


class Target:
    """Where to connect: ``unix`` path, or ``host``/``port`` (``tls`` for https)."""

    __slots__ = ("base_path", "host", "port", "tls", "unix", "url")

    def __init__(
        self,
        url: str,
        host: str = "localhost",
        port: int = 80,
        unix: str | None = None,
        tls: bool = False,
        base_path: str = "",
    ) -> None:
        self.url, self.host, self.port, self.unix = url, host, port, unix
        self.tls, self.base_path = tls, base_path

    @property
    def host_header(self) -> str:
        if self.unix is not None:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def target(url: str) -> Target:
    if url.startswith("unix:"):
        return Target(url, unix=url[len("unix:") :])
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"expected http(s)://host[:port] or unix:/path, got {url!r}")
    authority, slash, path = rest.partition("/")
    tls = scheme == "https"
    if authority.startswith("["):
        end = authority.find("]")
        host, port_text = authority[1:end], authority[end + 2 :]
    else:
        host, _, port_text = authority.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        raise ValueError(f"expected http(s)://host[:port] or unix:/path, got {url!r}")
    port = int(port_text) if port_text else (443 if tls else 80)
    base = ("/" + path).rstrip("/") if slash else ""
    return Target(url, host=host, port=port, tls=tls, base_path=base)


def request_bytes(
    t: Target, path: str, headers: dict[str, str], method: str = "GET", body: bytes | None = None
) -> bytes:
    lines = [f"{method} {t.base_path}{path} HTTP/1.1", f"Host: {t.host_header}"]
    lines.append("Connection: close")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def parse_response(data: bytes, method: str = "GET") -> Response:
    """The whole answer read off a ``Connection: close`` request (:mod:`loader.httpwire`)."""
    import io

    try:
        return read_response(io.BytesIO(data), method)[0]
    except Closed:
        raise ValueError("empty HTTP response") from None


def _bounded(size: int) -> int:
    if size > MAX_RESPONSE:
        raise ValueError(f"the response is larger than {MAX_RESPONSE // (1024 * 1024)} MiB")
    return size


def get(url: str, path: str, headers: dict[str, str], timeout: float) -> Response:
    """Blocking GET (plain HTTP or a unix socket: the local agent).

    Uses the C ``_socket`` module directly: ``socket`` imports ``enum`` and would cost the exec
    path more than everything else it does.
    """
    import _socket

    t = target(url)
    if t.tls:
        raise ValueError("https needs the full client")
    sock = None
    try:
        if t.unix is not None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(t.unix)
            check_peer(sock, t.unix)
        else:
            error: OSError | None = None
            for family, kind, proto, _, address in _addresses(_socket, t.host, t.port):
                candidate = _socket.socket(family, kind, proto)
                candidate.settimeout(timeout)
                try:
                    candidate.connect(address)
                except OSError as exc:
                    candidate.close()
                    error = exc
                    continue
                sock = candidate
                break
            if sock is None:
                raise error or OSError("no address")
        sock.sendall(request_bytes(t, path, headers))
        chunks = []
        size = 0
        while chunk := sock.recv(65536):
            size = _bounded(size + len(chunk))
            chunks.append(chunk)
        return parse_response(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise _unreachable(url, exc) from None
    finally:
        if sock is not None:
            sock.close()


def _addresses(mod: Any, host: str, port: int) -> Iterator[tuple[Any, ...]]:
    """Connect candidates for ``host``, lazily. IP literals (and localhost, tried as 127.0.0.1
    first) skip getaddrinfo, whose first call in a process costs ~10 ms of resolver set-up."""
    literal = "127.0.0.1" if host == "localhost" else host
    for family in (mod.AF_INET, mod.AF_INET6):
        try:
            mod.inet_pton(family, literal)
        except OSError:
            continue
        yield (
            family,
            mod.SOCK_STREAM,
            0,
            "",
            (literal, port) if family == mod.AF_INET else (literal, port, 0, 0),
        )
        if host != "localhost":
            return
        break
    yield from mod.getaddrinfo(host, port, 0, mod.SOCK_STREAM)


async def aget(
    url: str, path: str, headers: dict[str, str], timeout: float, ca_file: str | None = None
) -> Response:
    """The same GET with asyncio streams; cancellable; https verified against ``ca_file``."""
    return await arequest("GET", url, path, headers, timeout, ca_file)


async def arequest(
    method: str,
    url: str,
    path: str,
    headers: dict[str, str],
    timeout: float,
    ca_file: str | None = None,
    body: bytes | None = None,
) -> Response:
    """Any request (a JSON ``body``) with asyncio streams, as :func:`aget`."""
    import asyncio
    import ssl

    t = target(url)
    try:
        async with asyncio.timeout(timeout):
            if t.unix is not None:
                reader, writer = await asyncio.open_unix_connection(t.unix)
                try:
                    check_peer(writer.get_extra_info("socket"), t.unix)
                except BaseException:
                    writer.close()
                    raise
            else:
                ctx = None
                if t.tls:
                    ctx = ssl.create_default_context(cafile=ca_file)
                    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                reader, writer = await asyncio.open_connection(
                    t.host, t.port, ssl=ctx, server_hostname=t.host if ctx else None
                )
            try:
                writer.write(request_bytes(t, path, headers, method, body))
                await writer.drain()
                chunks = []
                size = 0
                while chunk := await reader.read(65536):
                    size = _bounded(size + len(chunk))
                    chunks.append(chunk)
            finally:
                writer.close()
        return parse_response(b"".join(chunks), method)
    except ssl.SSLError as exc:
        raise tls_failure(url, str(exc.reason or exc)) from None
    except (OSError, ValueError) as exc:
        raise _unreachable(url, exc) from None


def _unreachable(url: str, exc: OSError | ValueError) -> ServiceUnavailableError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    cls = UnreachableError if nobody_listening(exc) else ServiceUnavailableError
    return cls(f"{url} is unreachable: {reason}")
