"""The store's aiohttp application: the factory, the lifecycle, the access log."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from loader.backoff import Backoff, keep_running
from loader.errors import ConfigError, LoaderError
from loader.server import openapi
from loader.server.authn import TokenAuthenticator
from loader.server.connections import ConnectionGuard, GuardedSite
from loader.server.handlers import ROUTES
from loader.server.idempotency import Idempotency
from loader.server.issuers import fetch_jwks
from loader.server.limits import RefusalLimiter
from loader.server.metrics import StoreMetrics
from loader.server.routing import Route, endpoint, unmatched
from loader.server.schemas import MAX_BODY_BYTES
from loader.server.settings import StoreSettings
from loader.server.shared import SHARED, Limiter, NoLimit, ServerState
from loader.serving import serve
from loader.store.audit import AuditLog
from loader.store.backends import open_repository
from loader.store.consumers import Consumers
from loader.store.health import DatabaseTimeouts
from loader.store.jwks import JwksCache
from loader.store.jwt import JwtAuthority
from loader.store.keycheck import check_master_keys
from loader.store.keyfile import KeyringFile
from loader.store.readiness import MIB, Readiness
from loader.store.service import KeyringSource, StoreService
from loader.store.workload import WorkloadVerifier

log = logging.getLogger("loader.store")
HOT_PATHS = (  # the runtime read first, then the Spice and environment secrets routes
    "/v1/apps/{appId}/environments/{env}/rendered",
    "/v1/apps/{appId}/secrets",
    "/v1/apps/{appId}/environments/{env}/secrets",
)
KEEPALIVE_TIMEOUT = 75.0  # an idle kept-alive connection is closed after this (aiohttp: 3630)


def create_app(state: ServerState) -> web.Application:
    """No middleware: every route's own wrapper maps errors (one coroutine frame less for each
    of the thousands of long-polls a store holds); a catch-all answers 404 and 405 in JSON."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SHARED] = state
    app.on_shutdown.append(_release_watchers)
    # aiohttp tries a path's candidates in the order they were added: the hot reads first.
    for route in sorted(ROUTES, key=_hot_first):
        app.router.add_route(route.method, route.path, endpoint(route))
    app.router.add_route("*", "/{unmatched:.*}", unmatched(ROUTES))
    state.openapi = openapi.build(ROUTES)
    return app


def _hot_first(route: Route) -> int:
    return HOT_PATHS.index(route.path) if route.path in HOT_PATHS else len(HOT_PATHS)


async def _release_watchers(app: web.Application) -> None:
    """On shutdown, answer held long-polls now instead of waiting out their ``wait``."""
    app[SHARED].service.release_watchers()


@asynccontextmanager
async def store_state(
    settings: StoreSettings,
    keys: KeyringSource | None = None,
    limiter: Limiter | None = None,
) -> AsyncIterator[ServerState]:
    """Open the repository, keys, service and audit log; close them in reverse order."""
    keyring = keys if keys is not None else KeyringFile(settings.key_file)
    timeouts = DatabaseTimeouts(acquire=settings.db_acquire_timeout, statement=settings.db_timeout)
    async with AsyncExitStack() as stack:
        repo = await open_repository(
            settings.db_url,
            migrate=settings.migrate,
            lock=True,
            timeouts=timeouts,
            application_name="loader-store",
        )
        stack.push_async_callback(repo.close)
        # A key file that does not match the data is refused here, before anything is served.
        await check_master_keys(repo, keyring.keyring, settings.key_file if keys is None else None)
        service = StoreService(repo, keyring, max_versions=settings.max_versions)
        audit = AuditLog(
            repo,
            settings.audit_file,
            max_queue=settings.audit_queue_max,
            fail_open=settings.allow_unaudited_reveals,
        )
        await stack.enter_async_context(audit.running())
        service.on_audited = audit.mirror
        service.on_unchanged = audit.record
        # Other replicas' changes: followed for as long as the store runs (restarted, logged,
        # if it ever stops).
        watcher = asyncio.create_task(
            keep_running(
                "following change notifications",
                lambda: repo.watch_changes(service.notifier_resync),
                Backoff(0.1, 5.0),
                log,
            )
        )
        stack.push_async_callback(_cancel, watcher)
        readiness = Readiness(
            repo,
            keyring,
            timeout=settings.ready_timeout,
            min_free=settings.min_free_space_mb * MIB,
        )
        with contextlib.suppress(LoaderError):  # the data keys the key self-test will open
            readiness.remember(await repo.probe())
        consumers = Consumers(
            repo,
            ttl=settings.consumer_ttl,
            flush_interval=settings.consumer_flush_interval,
            lease=settings.restart_lease,
        )
        await stack.enter_async_context(consumers.running())
        idempotency = Idempotency()
        authority = JwtAuthority(
            repo, keyring, settings.access_token_ttl, leeway=settings.jwt_leeway
        )
        yield ServerState(
            service=service,
            audit=audit,
            authenticate=TokenAuthenticator(repo, authority),
            jwt=authority,
            workload=WorkloadVerifier(
                repo,
                JwksCache(fetch_jwks, settings.jwks_refetch_interval, settings.jwks_max_age),
                leeway=settings.jwt_leeway,
            ),
            limiter=limiter or NoLimit(),
            readiness=readiness,
            consumers=consumers,
            metrics=StoreMetrics(repo.health, service.notifier, audit, idempotency, consumers),
            idempotency=idempotency,
            max_long_polls_per_token=settings.max_long_polls_per_token,
            refusals=RefusalLimiter(settings.refusal_rate_limit, settings.refusal_burst),
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: not a PEM pair") from None
    except OSError as exc:
        raise ConfigError(f"cannot read --tls-cert/--tls-key: {exc.strerror}") from None
    return ctx


def _route(request: web.BaseRequest) -> str:
    """The matched route's template (``/v1/apps/{appId}/...``) -- never the raw path."""
    try:
        resource = request.match_info.route.resource  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):  # a request that never reached routing
        return "-"
    return str(resource.canonical) if resource is not None else "-"


class RouteAccessLogger(AbstractAccessLogger):
    """Logs the matched route's template, not the request line: a client may have put a value
    where a name goes (or in the query), and the log must not keep it."""

    @property
    def enabled(self) -> bool:
        # Asked once per connection: off (the default level), no line is built per request.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %s %.6fs',
            request.remote,
            request.method,
            _route(request),
            response.status,
            response.body_length,
            time,
        )


def serving(
    app: web.Application,
    sock: socket.socket,
    host: str = "",
    ssl_context: ssl.SSLContext | None = None,
    guard: ConnectionGuard | None = None,
) -> AbstractAsyncContextManager[str]:
    """Serve the store's ``app`` on a socket bound beforehand (:mod:`loader.listener`) with its
    access log and keep-alive; yields the URL. With a ``guard``, connections are capped per
    client address and must send their headers in time (:mod:`loader.server.connections`)."""
    return serve(
        app,
        sock,
        host,
        ssl_context=ssl_context,
        site=web.SockSite if guard is None else functools.partial(GuardedSite, guard=guard),
        access_log=logging.getLogger("loader.access"),
        access_log_class=RouteAccessLogger,
        shutdown_timeout=5,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
