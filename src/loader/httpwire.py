"""Reading an HTTP/1.1 response off the wire (pure stdlib; no sockets here): the one parser of
both HTTP clients, :mod:`loader.httpclient` (keep-alive, the CLI) and :mod:`loader.runner.http`
(``loader run``'s GET, on its exec path).

Status line, headers, and a body framed by ``Content-Length``, chunked transfer coding
(extensions and trailers allowed) or the end of the connection. Bounded: headers at
:data:`MAX_HEAD`, bodies at :data:`MAX_BODY`; anything garbled, truncated or too large is a
``ValueError`` naming the fault (never a byte of the body).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None


class Closed(Exception):
    """The other side closed the connection before a status line (a kept-alive connection the
    server had closed: try once more on a new one)."""


def read_response(stream: BinaryIO, method: str = "GET") -> tuple[Response, bool]:
    """One response from ``stream``; also whether the connection can be reused."""
    line = stream.readline(MAX_HEAD)
    if not line:
        raise Closed
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP response")
    status = int(parts[1])
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        line = stream.readline(MAX_HEAD)
        size += len(line)
        if not line or size > MAX_HEAD:
            raise ValueError("truncated or oversized HTTP headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), keep
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(status, headers, _read_chunked(stream)), keep
    if "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) > MAX_BODY:
            raise ValueError("bad Content-Length")
        body = stream.read(int(length))
        if len(body) != int(length):
            raise ValueError("truncated HTTP body")
        return Response(status, headers, body), keep
    body = stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ValueError("HTTP body too large")
    return Response(status, headers, body), False


def _read_chunked(stream: BinaryIO) -> bytes:
    out = bytearray()
    while True:
        size_line = stream.readline(1024)
        if not size_line.endswith(b"\n"):
            raise ValueError("truncated chunked body")
        digits = size_line.split(b";")[0].strip()
        if not digits or any(c not in b"0123456789abcdefABCDEF" for c in digits):
            raise ValueError("bad chunk size")
        size = int(digits, 16)
        if size == 0:
            while stream.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise ValueError("HTTP body too large")
        chunk = stream.read(size)
        if len(chunk) != size or stream.readline(1024) not in (b"\r\n", b"\n"):
            raise ValueError("truncated chunked body")
        out += chunk
