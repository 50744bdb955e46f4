"""Serving an aiohttp app on a socket bound beforehand (:mod:`loader.listener`): the one way the
store, the agent and the webhook start their HTTP side (``loader dev`` too).

:func:`serve` sets up the app's runner, starts a site on the socket (TCP or unix, TLS when
given a context) and yields the URL it answers on, read from the socket itself -- not from
aiohttp's private attributes. Leaving the block cleans the runner up (handlers drained for at
most ``shutdown_timeout``); the socket stays the caller's.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from loader.listener import listen_url

SiteFactory = Callable[..., web.BaseSite]
BACKLOG = 1024


@asynccontextmanager
async def serve(
    app: web.Application,
    sock: socket.socket,
    host: str = "",
    *,
    ssl_context: ssl.SSLContext | None = None,
    site: SiteFactory = web.SockSite,
    **runner_options: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``sock`` until the block ends; yields ``unix:/path`` or
    ``http(s)://host:port`` (``host`` as configured, the port as bound: port 0 picks one).
    ``site`` makes the site (the store's caps connections per client); ``runner_options`` go
    to ``web.AppRunner`` (access log, shutdown and keep-alive timeouts)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await site(runner, sock, ssl_context=ssl_context, backlog=BACKLOG).start()
        yield listen_url(sock, host, "https" if ssl_context is not None else "http")
    finally:
        await runner.cleanup()
