"""OAuth client-credentials access tokens: short-lived HS256 JWTs (PyJWT).

The signing key is derived from a master key with HKDF (so nothing more to store or rotate);
the JWT header's ``kid`` names that master key, and tokens signed under a key that has left the
key file stop verifying. Claims: ``iss``/``aud`` ``loader``, ``sub`` (the client id), ``iat``,
``nbf``, ``exp``, ``jti``, ``scope`` (space-separated), ``app`` and ``envs`` (bindings).
A verified token is still refused when its client has been revoked since.

Workload identity (:mod:`loader.store.workload`) issues the same tokens: ``sub`` is then the
trust policy's id (``tp_...``) and ``wsub`` the workload's verified subject, for the audit; such
a token is refused once its policy has been deleted.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from loader.crypto import Keyring
from loader.errors import UnauthorizedError
from loader.store.auth import Principal, usable
from loader.store.models import TokenRecord, TrustPolicy, utcnow
from loader.store.repository import Repository
from loader.store.service import KeyringSource
from loader.store.trust import TRUST_PREFIX

ISSUER = "loader"
AUDIENCE = "loader"
ALGORITHM = "HS256"


def signing_key(master: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"loader/v1/jwt-hs256"
    ).derive(master)


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int
    scope: str


class JwtAuthority:
    def __init__(
        self, repo: Repository, keys: KeyringSource, ttl: float = 900, leeway: float = 10
    ) -> None:
        self.repo = repo
        self.keys = keys
        self.ttl = int(ttl)
        self.leeway = leeway  # seconds of clock skew between replicas (exp, nbf, iat)
        self._derived: dict[str, bytes] = {}

    def _key(self, keyring: Keyring, kid: str) -> bytes | None:
        cached = self._derived.get(kid)
        if cached is not None and keyring.get(kid) is not None:
            return cached
        master = keyring.get(kid)
        if master is None:
            return None
        key = self._derived[kid] = signing_key(master.key)
        return key

    def issue(self, client: TokenRecord, scopes: frozenset[str]) -> Issued:
        return self._issue(client.id, scopes, client.app_id, client.environments, self.ttl, {})

    def issue_workload(self, policy: TrustPolicy, subject: str, ttl: int) -> Issued:
        """An access token with ``policy``'s grant for the workload ``subject``."""
        extra = {"wsub": subject}
        return self._issue(policy.id, policy.scopes, policy.app_id, policy.environments, ttl, extra)

    def _issue(
        self,
        sub: str,
        scopes: frozenset[str],
        app_id: int | None,
        environments: tuple[str, ...] | None,
        ttl: int,
        extra: dict[str, Any],
    ) -> Issued:
        keyring = self.keys.keyring
        kid = keyring.primary.id
        key = self._key(keyring, kid)
        assert key is not None
        now = int(time.time())
        scope = " ".join(sorted(scopes))
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(12),
            "scope": scope,
            "app": app_id,
            "envs": list(environments) if environments is not None else None,
            **extra,
        }
        token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
        return Issued(token, ttl, scope)

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("invalid token") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ALGORITHM:
            raise UnauthorizedError("invalid token")
        keyring = self.keys.keyring
        if keyring.get(kid) is None:
            self.keys.refresh()
            keyring = self.keys.keyring
        key = self._key(keyring, kid)
        if key is None:
            raise UnauthorizedError("invalid token (signed with a retired key)")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "scope", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("access token expired") from None
        except jwt.PyJWTError:
            raise UnauthorizedError("invalid token") from None
        envs = claims.get("envs")
        expires = float(claims["exp"])
        sub = str(claims["sub"])
        if sub.startswith(TRUST_PREFIX):
            if await self.repo.get_trust_policy(sub) is None:
                raise UnauthorizedError("access token of a deleted trust policy")
            wsub = claims.get("wsub")
            return Principal(
                token_id=sub,
                scopes=frozenset(str(claims["scope"]).split()),
                app_id=claims.get("app"),
                environments=tuple(envs) if envs is not None else None,
                expires_at=expires,
                subject=wsub if isinstance(wsub, str) else None,
            )
        client = await self.repo.get_token(sub)
        if client is None or client.kind != "client" or not usable(client, utcnow()):
            raise UnauthorizedError("access token of a revoked or unknown client")
        if client.expires_at is not None:
            expires = min(expires, client.expires_at.timestamp())
        return Principal(
            token_id=client.id,
            scopes=frozenset(str(claims["scope"]).split()),
            app_id=claims.get("app"),
            environments=tuple(envs) if envs is not None else None,
            expires_at=expires,
        )
