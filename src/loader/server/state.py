"""What every request handler shares: the service, the audit log, auth and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from loader.server.idempotency import Idempotency
from loader.server.metrics import StoreMetrics
from loader.store.audit import AuditLog
from loader.store.auth import Principal
from loader.store.jwt import JwtAuthority
from loader.store.readiness import Readiness
from loader.store.service import StoreService


class Authenticator(Protocol):
    async def __call__(self, request: web.Request) -> Principal: ...


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
    limiter: Limiter = field(default_factory=NoLimit)
    max_wait: float = 60.0
    openapi: dict[str, object] = field(default_factory=dict)
    readiness: Readiness | None = None
    metrics: StoreMetrics | None = None
    idempotency: Idempotency = field(default_factory=Idempotency)


STATE = web.AppKey("state", ServerState)
