"""The webhook's HTTP side: ``POST /mutate`` and ``GET /healthz`` over TLS (aiohttp).

The certificate is re-read when its files change (cert-manager renews it in place; a webhook
serving an expired certificate would silently stop injecting under ``failurePolicy: Ignore``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from loader.eventloop import signals_watched
from loader.listener import bind_tcp
from loader.output import say
from loader.serving import serve
from loader.webhook.inject import MalformedReviewError, review
from loader.webhook.settings import WebhookSettings

log = logging.getLogger("loader.webhook")
SETTINGS = web.AppKey("webhook_settings", WebhookSettings)
# The API server sends the whole pod; etcd's object limit is 1.5 MiB, its request limit 3 MiB.
MAX_BODY = 8 * 1024 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "code": "invalid_request"}, status=status)


async def mutate(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    try:
        answer = review(body, request.app[SETTINGS])
    except MalformedReviewError as exc:
        log.warning("refused a malformed admission request: %s", exc.message)
        return _error(400, exc.message)
    return web.json_response(answer)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: WebhookSettings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


class ReloadingTLS:
    """A server TLS context (1.2 minimum) whose certificate follows its files."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._current_stamp()
        self.context.load_cert_chain(cert, key)

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert, self.key):
            try:
                st = path.stat()  # follows Kubernetes' ..data symlinks
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def refresh(self) -> bool:
        """Load the files again if they changed; True when the new pair is in use. A pair that
        does not load (caught half-written) keeps the old one until the next look."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("could not reload the TLS certificate yet: %s", type(exc).__name__)
            return False
        self._stamp = stamp
        log.info("reloaded the TLS certificate from %s", self.cert)
        return True


async def _follow(tls: ReloadingTLS, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        tls.refresh()


@asynccontextmanager
async def serving(settings: WebhookSettings) -> AsyncIterator[str]:
    """Serve until the block ends; yields the URL actually bound (port 0 picks a free one).
    The address is bound first: one in use fails before the certificate is read."""
    address = settings.listen_address
    sock = bind_tcp(address.host, address.port)
    tls = None
    if not settings.insecure:
        assert settings.tls_cert is not None and settings.tls_key is not None
        tls = ReloadingTLS(settings.tls_cert, settings.tls_key)
    try:
        async with serve(
            create_app(settings),
            sock,
            address.host,
            ssl_context=tls.context if tls else None,
            access_log=logging.getLogger("loader.access"),
            access_log_format='%a "%r" %s %b %Tfs',
            shutdown_timeout=5,
        ) as url:
            if tls is None:
                yield url
                return
            follower = asyncio.create_task(_follow(tls, settings.tls_reload_interval))
            try:
                yield url
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
    finally:
        sock.close()


async def run_webhook(settings: WebhookSettings) -> None:
    async with serving(settings) as url:
        with signals_watched() as stop:  # before saying we listen
            say(f"loader webhook listening on {url}")
            log.info("webhook ready on %s (store %s)", url, settings.store_url)
            sig = await stop
        log.info("received %s, shutting down", sig.name)
