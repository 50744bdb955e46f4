"""Bearer-token authentication: loader tokens (``lt_...``) and, when enabled, OAuth JWTs."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from loader.errors import UnauthorizedError
from loader.store.auth import Principal, split_token, usable, verify_secret
from loader.store.models import utcnow
from loader.store.repository import Repository


class JwtVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise UnauthorizedError("missing bearer token (send Authorization: Bearer <token>)")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise UnauthorizedError("the Authorization header must read Bearer <token>")
    return credential


class TokenAuthenticator:
    def __init__(self, repo: Repository, jwt: JwtVerifier | None = None) -> None:
        self.repo = repo
        self.jwt = jwt

    async def __call__(self, request: web.Request) -> Principal:
        credential = bearer(request)
        parts = split_token(credential)
        if parts is None:
            if self.jwt is not None and credential.count(".") == 2:
                return await self.jwt.verify(credential)
            verify_secret(credential, None)  # same work as a real check
            raise UnauthorizedError("invalid token")
        token_id, secret = parts
        record = await self.repo.get_token(token_id)
        if (
            not verify_secret(secret, record)
            or record is None
            or record.kind != "token"
            or not usable(record, utcnow())
        ):
            raise UnauthorizedError("invalid, expired or revoked token")
        return Principal(record.id, record.scopes, record.app_id, record.environments)
