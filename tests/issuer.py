"""A real local token issuer for the workload identity tests: keys generated here (RSA and EC),
tokens signed with PyJWT, the JWKS served over HTTP by an aiohttp app (or written to a file),
with a count of how often the keys were fetched. Kubernetes-shaped tokens by default."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "loader-store"


class SigningKey:
    def __init__(self, alg: str = "RS256") -> None:
        self.alg, self.kid = alg, "k-" + secrets.token_hex(4)
        if alg == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm: Any = jwt.algorithms.RSAAlgorithm
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            algorithm = jwt.algorithms.ECAlgorithm
        self.jwk = {
            **algorithm.to_jwk(self.private.public_key(), as_dict=True),
            "kid": self.kid,
            "use": "sig",
            "alg": alg,
        }


def pod_claims(
    namespace: str = "shop", service_account: str = "api", **overrides: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [AUDIENCE],
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": "api-7d9f-x2", "uid": secrets.token_hex(8)},
            "serviceaccount": {"name": service_account, "uid": secrets.token_hex(8)},
        },
    }
    claims.update(overrides)
    return claims


class Issuer:
    def __init__(self, *algs: str) -> None:
        self.keys = [SigningKey(a) for a in (algs or ("RS256",))]
        self.fetches = 0
        self.url = ""

    @property
    def key(self) -> SigningKey:
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk for k in self.keys]}

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """A new key replaces the old ones (the old kid is no longer published)."""
        self.keys = [SigningKey(alg)]
        return self.key

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            claims if claims is not None else pod_claims(),
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )

    def write_jwks(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.jwks()))
        tmp.replace(path)

    def app(self) -> web.Application:
        async def jwks(_request: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response(self.jwks())

        app = web.Application()
        app.router.add_get("/openid/v1/jwks", jwks)
        return app
