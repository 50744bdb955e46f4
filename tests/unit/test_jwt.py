"""Access-token checks allow a small, configurable clock skew between replicas (JWT leeway)."""

from __future__ import annotations

import time
from typing import Any, cast

import jwt
import pytest

from loader.crypto import Keyring
from loader.errors import UnauthorizedError
from loader.store.jwt import ALGORITHM, AUDIENCE, ISSUER, JwtAuthority, signing_key
from loader.store.keyfile import StaticKeyring
from loader.store.models import TokenRecord, utcnow
from loader.store.repository import Repository

CLIENT = TokenRecord(
    id="lc_test",
    kind="client",
    digest=b"x" * 32,
    scopes=frozenset({"secrets:read"}),
    app_id=None,
    environments=None,
    created_at=utcnow(),
)


class Clients:
    async def get_token(self, token_id: str) -> TokenRecord | None:
        return CLIENT if token_id == CLIENT.id else None


def token(keyring: Keyring, *, skew: float, lifetime: float = 60) -> str:
    """A token from a replica whose clock is ``skew`` seconds ahead of ours."""
    now = int(time.time() + skew)
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": CLIENT.id, "iat": now, "nbf": now,
        "exp": now + lifetime, "jti": "j", "scope": "secrets:read", "app": None, "envs": None,
    }  # fmt: skip
    key = signing_key(keyring.primary.key)
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": keyring.primary.id})


@pytest.mark.parametrize(
    ("skew", "lifetime", "leeway", "accepted"),
    [
        (5, 60, 10, True),  # issued by a replica 5 s ahead: fine within 10 s of leeway
        (5, 60, 0, False),  # ... refused without leeway (not yet valid)
        (30, 60, 10, False),  # too far ahead
        (-65, 60, 10, True),  # expired 5 s ago by our clock: within leeway
        (-65, 60, 0, False),
    ],
)
async def test_leeway(skew: float, lifetime: float, leeway: float, accepted: bool) -> None:
    keyring = Keyring.generate()
    authority = JwtAuthority(cast(Repository, Clients()), StaticKeyring(keyring), leeway=leeway)
    issued = token(keyring, skew=skew, lifetime=lifetime)
    if accepted:
        assert (await authority.verify(issued)).token_id == CLIENT.id
    else:
        with pytest.raises(UnauthorizedError):
            await authority.verify(issued)
