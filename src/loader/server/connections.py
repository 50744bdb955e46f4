"""Connection-level limits of the store's HTTP server, below aiohttp's request handling.

* A cap on the connections one client address holds open at once: past it, a new connection is
  answered ``429`` and closed before anything is read from it.
* A header-read timeout: a connection must deliver a request's complete headers within
  ``header_timeout`` seconds of opening, or of the first byte of its next request; otherwise it
  is answered ``408`` and closed. (aiohttp has no such timeout: a client sending half a request
  line, or a header a byte a minute, would hold a file descriptor for an hour.)

Both live in a :class:`~aiohttp.web_protocol.RequestHandler` subclass, the asyncio protocol
aiohttp makes per connection; :class:`GuardedSite` serves with it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


def raw_response(status: int, reason: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\nCache-Control: no-store\r\n"
        + ("Retry-After: 1\r\n" if status == 429 else "")
        + "\r\n"
    )
    return head.encode() + data


TOO_MANY = raw_response(
    429,
    "Too Many Requests",
    {
        "error": "too many connections from this address; close some and retry",
        "code": "rate_limited",
        "retry_after": 1,
    },
)
TIMED_OUT = raw_response(
    408,
    "Request Timeout",
    {"error": "the request headers did not arrive in time", "code": "invalid_request"},
)


class ConnectionGuard:
    """Open connections per client address (0 = no cap), and the header-read timeout."""

    def __init__(self, max_per_client: int, header_timeout: float) -> None:
        self.max_per_client = max_per_client
        self.header_timeout = header_timeout
        self._open: dict[str, int] = {}

    def admit(self, client: str) -> bool:
        count = self._open.get(client, 0)
        if self.max_per_client and count >= self.max_per_client:
            return False
        self._open[client] = count + 1
        return True

    def release(self, client: str) -> None:
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, with the guard's cap and header timeout.

    Reads three of aiohttp's attributes (``_request_count``: requests parsed on this connection;
    ``_current_request``: set while a handler runs, so bytes then are its body; ``_waiter``:
    pending while the connection waits for its next request); the adversarial tests
    (tests/adversarial/test_unauthenticated_load.py) fail if they change meaning."""

    __slots__ = ("_client", "_guard", "_header_timer")

    def __init__(self, manager: Any, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._client: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if client is not None:
            if not self._guard.admit(client):
                self._refuse(TOO_MANY)
                return
            self._client = client
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is not None:
            self._guard.release(self._client)
            self._client = None
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()  # a request's headers are complete
        elif self._header_timer is None and self._current_request is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def _idle(self) -> bool:
        """Waiting for a request (not handling one)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm(self) -> None:
        if self._guard.header_timeout > 0:
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self._guard.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._idle():
            self._refuse(TIMED_OUT)
        else:  # still writing the previous response: look again later
            self._arm()

    def _refuse(self, response: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(response)
        self.force_close()


class GuardedSite(web.SockSite):
    """``web.SockSite`` whose connections are :class:`GuardedRequestHandler`."""

    __slots__ = ("_guard",)

    def __init__(self, runner: web.AppRunner, *args: Any, guard: ConnectionGuard, **kw: Any):
        super().__init__(runner, *args, **kw)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        factory = functools.partial(
            GuardedRequestHandler,
            server,
            guard=self._guard,
            loop=loop,
            **server._kwargs,  # what aiohttp's Server would give each RequestHandler
        )
        self._server = await loop.create_server(
            factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )
