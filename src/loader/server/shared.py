"""What every request handler shares: the service, the audit log, auth and limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from loader.server.bodycache import BodyCache
from loader.server.idempotency import Idempotency
from loader.server.limits import RefusalLimiter
from loader.server.metrics import StoreMetrics
from loader.store.audit import AuditLog
from loader.store.auth import Principal
from loader.store.consumers import Consumers
from loader.store.jwt import JwtAuthority
from loader.store.readiness import Readiness
from loader.store.service import StoreService
from loader.store.workload import WorkloadVerifier


class Authenticator(Protocol):
    async def __call__(self, request: web.Request) -> Principal: ...

    async def recheck(self, principal: Principal) -> None:
        """Raise UnauthorizedError when ``principal`` has expired or been revoked since."""
        ...


class Limiter(Protocol):
    def check(self, principal: Principal, route: object, request: web.Request) -> None: ...


class NoLimit:
    def check(self, principal: Principal, route: object, request: web.Request) -> None:
        return None


@dataclass
class ServerState:
    service: StoreService
    audit: AuditLog
    authenticate: Authenticator
    jwt: JwtAuthority | None = None
    workload: WorkloadVerifier | None = None
    limiter: Limiter = field(default_factory=NoLimit)
    refusals: RefusalLimiter = field(default_factory=lambda: RefusalLimiter(5, 50))
    max_wait: float = 60.0
    max_long_polls_per_token: int = 1000
    openapi: dict[str, object] = field(default_factory=dict)
    readiness: Readiness | None = None
    consumers: Consumers | None = None
    metrics: StoreMetrics | None = None
    idempotency: Idempotency = field(default_factory=Idempotency)
    bodies: BodyCache = field(default_factory=BodyCache)
    # Long lists are read and encoded one page at a time, whoever asks (the rest wait their
    # turn): between two pages, everything else the store has to do gets the event loop.
    list_pages: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


SHARED = web.AppKey("state", ServerState)
