"""Bearer-token authentication: loader tokens (``lt_...``) and, when enabled, OAuth JWTs.

Token records come from memory (:mod:`loader.store.tokencache`), dropped the moment a
revocation is announced: a revoked token is refused on the very next request.

A request held by a long-poll is authenticated again when its wait ends (:meth:`recheck`): a
token revoked, or a credential expired, while the request waited gets no answer but a 401.
"""

from __future__ import annotations

import time
from typing import Protocol

from aiohttp import web

from loader.errors import UnauthorizedError
from loader.store.auth import Principal, split_token, usable, verify_secret
from loader.store.models import utcnow
from loader.store.repository import Repository
from loader.store.tokencache import TokenCache
from loader.store.trust import TRUST_PREFIX


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
    if not credential.isascii():  # no token or JWT is; bytes not UTF-8 arrive as surrogates
        raise UnauthorizedError("invalid token")
    return credential


class TokenAuthenticator:
    def __init__(self, repo: Repository, jwt: JwtVerifier | None = None) -> None:
        self.repo = repo
        self.jwt = jwt
        self.tokens = TokenCache(repo)

    async def __call__(self, request: web.Request) -> Principal:
        credential = bearer(request)
        parts = split_token(credential)
        if parts is None:
            if self.jwt is not None and credential.count(".") == 2:
                return await self.jwt.verify(credential)
            verify_secret(credential, None)  # same work as a real check
            raise UnauthorizedError("invalid token")
        token_id, secret = parts
        record = await self.tokens.get(token_id)
        if (
            not verify_secret(secret, record)
            or record is None
            or record.kind != "token"
            or not usable(record, utcnow())
        ):
            raise UnauthorizedError("invalid, expired or revoked token")
        expires = record.expires_at.timestamp() if record.expires_at is not None else None
        return Principal(record.id, record.scopes, record.app_id, record.environments, expires)

    async def recheck(self, principal: Principal) -> None:
        """Is ``principal`` still good (not expired, its token or client not revoked)? For a
        request that was held: thousands woken at once by one change share one read per token."""
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise UnauthorizedError("the token expired while the request was held")
        if principal.token_id.startswith(TRUST_PREFIX):  # workload identity: its policy
            if await self.repo.get_trust_policy(principal.token_id) is None:
                raise UnauthorizedError("the trust policy was deleted while the request was held")
            return
        record = await self.tokens.get(principal.token_id)
        if record is None or not usable(record, utcnow()):
            raise UnauthorizedError("the token was revoked while the request was held")
