"""Bearer tokens, scopes and the principal a request acts as.

A token reads ``lt_<id>_<secret>``: the id is public (lists, audit records), the secret is 32
random bytes of which only a SHA-256 digest is stored; verification compares digests in constant
time, and an unknown id is compared against a dummy digest so timing tells nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from loader.errors import InsufficientScopeError, InvalidRequestError
from loader.store.models import TokenRecord, utcnow
from loader.store.repository import Repository

SCOPES = ("*", "apps:read", "apps:write", "secrets:read", "secrets:write", "secrets:reveal")
_IMPLIED = {"apps:write": "apps:read", "secrets:write": "secrets:read"}

TOKEN_PREFIX = "lt_"
CLIENT_PREFIX = "lc_"
_ID_HEX = 12
_HEX_ID = re.compile(f"[0-9a-f]{{{_ID_HEX}}}")  # a token id past its prefix
_DUMMY_DIGEST = hashlib.sha256(b"loader-dummy").digest()


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.replace(" ", ",").split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise InvalidRequestError(
            f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
            if unknown
            else "at least one scope is required"
        )
    return scopes


def grants(held: frozenset[str], needed: str) -> bool:
    if "*" in held or needed in held:
        return True
    return any(_IMPLIED.get(h) == needed for h in held)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(_ID_HEX // 2)


def new_token() -> tuple[str, str, str]:
    """``(id, secret, token)``; the token is what the user keeps."""
    token_id = new_id(TOKEN_PREFIX)
    secret = new_secret()
    return token_id, secret, f"{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """``lt_<12 hex>_<secret>`` -> ``(id, secret)``; None when it is not of that shape."""
    head = len(TOKEN_PREFIX) + _ID_HEX
    if len(token) < head + 2 or not token.startswith(TOKEN_PREFIX) or token[head] != "_":
        return None
    if _HEX_ID.fullmatch(token, len(TOKEN_PREFIX), head) is None:
        return None
    return token[:head], token[head + 1 :]


def verify_secret(secret: str, record: TokenRecord | None) -> bool:
    expected = record.digest if record is not None else _DUMMY_DIGEST
    ok = hmac.compare_digest(digest(secret), expected)
    return ok and record is not None


def usable(record: TokenRecord, now: datetime) -> bool:
    if record.revoked_at is not None:
        return False
    return record.expires_at is None or record.expires_at > now


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a token's id, scopes and bindings."""

    token_id: str
    scopes: frozenset[str]
    app_id: int | None = None
    environments: tuple[str, ...] | None = None
    expires_at: float | None = None  # POSIX time the credential stops being good (None: never)
    subject: str | None = None  # workload identity: the workload's subject (token_id: its policy)

    def require(self, scope: str) -> None:
        if not grants(self.scopes, scope):
            raise InsufficientScopeError(f"this token lacks the {scope} scope")

    def require_app(self, app_id: int) -> None:
        if self.app_id is not None and self.app_id != app_id:
            raise InsufficientScopeError("this token is bound to another app")

    def require_environment(self, name: str) -> None:
        if self.environments is not None and name not in self.environments:
            raise InsufficientScopeError("this token is bound to other environments")

    def require_all_environments(self) -> None:
        if self.environments is not None:
            raise InsufficientScopeError(
                "this token is bound to environments; this route acts on the whole app"
            )


async def issue_token(
    repo: Repository,
    scopes: frozenset[str],
    *,
    app_id: int | None = None,
    environments: tuple[str, ...] | None = None,
    ttl: float | None = None,
    description: str | None = None,
    kind: str = "token",
) -> tuple[TokenRecord, str]:
    """Create a bearer token, or (``kind="client"``) an OAuth client for the client credentials
    grant. Returns its record and what its holder keeps -- the token, or the client's secret --
    shown once and stored as a digest."""
    if kind == "client":
        token_id, secret = new_id(CLIENT_PREFIX), new_secret()
        credential = secret
    else:
        token_id, secret, credential = new_token()
    now = utcnow()
    record = TokenRecord(
        id=token_id,
        kind=kind,
        digest=digest(secret),
        scopes=scopes,
        app_id=app_id,
        environments=environments,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl) if ttl else None,
        description=description,
    )
    await repo.create_token(record)
    return record, credential
