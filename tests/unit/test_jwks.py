"""The JWKS cache: what a key set keeps, how often an issuer is asked (a fake clock and a
fetch that counts), and what an issuer that cannot be reached does."""

from __future__ import annotations

import asyncio
import json

import pytest

from loader.errors import ServiceUnavailableError
from loader.store.jwks import JwksCache, JwksError, Source, parse_jwks
from tests.issuer import Issuer, SigningKey

SOURCE: Source = ("url", "https://issuer.example/jwks")


class Fake:
    def __init__(self, issuer: Issuer) -> None:
        self.issuer, self.calls, self.down, self.now = issuer, 0, False, 1000.0

    async def fetch(self, _source: Source) -> bytes:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise JwksError("unreachable")
        return json.dumps(self.issuer.jwks()).encode()

    def cache(self) -> JwksCache:
        return JwksCache(self.fetch, refetch_interval=30, max_age=300, clock=lambda: self.now)


def test_parse_keeps_only_asymmetric_signing_keys() -> None:
    rsa, ec = SigningKey("RS256"), SigningKey("ES256")
    document = {
        "keys": [
            rsa.jwk,
            ec.jwk,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {**SigningKey().jwk, "use": "enc", "kid": "enc"},
            {**SigningKey().jwk, "kid": None},
            "junk",
        ]
    }
    keys = parse_jwks(json.dumps(document).encode())
    assert set(keys) == {rsa.kid, ec.kid}
    assert keys[rsa.kid].key_type == "RSA" and keys[ec.kid].key_type == "EC"
    for bad in (b"not json", b"[]", b'{"keys": 1}'):
        with pytest.raises(JwksError):
            parse_jwks(bad)


async def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    fake = Fake(Issuer())
    cache = fake.cache()
    kid = fake.issuer.key.kid
    assert await cache.key(SOURCE, kid) is not None
    assert await cache.key(SOURCE, kid) is not None
    assert fake.calls == 1
    results = await asyncio.gather(*(cache.key(SOURCE, f"made-up-{i}") for i in range(20)))
    assert results == [None] * 20 and fake.calls == 1  # within the interval: not asked again
    fake.now += 31
    new = fake.issuer.rotate()
    await asyncio.gather(*(cache.key(SOURCE, new.kid) for _ in range(10)))
    assert fake.calls == 2  # one refetch for ten concurrent askers
    assert await cache.key(SOURCE, new.kid) is not None
    assert await cache.key(SOURCE, kid) is None  # the old key left with the rotation


async def test_keys_age_out_and_outlive_an_issuer_outage() -> None:
    fake = Fake(Issuer())
    cache = fake.cache()
    kid = fake.issuer.key.kid
    await cache.key(SOURCE, kid)
    fake.now += 301
    fake.down = True
    assert await cache.key(SOURCE, kid) is not None  # stale keys kept while the issuer is down
    assert fake.calls == 2
    assert await cache.key(SOURCE, kid) is not None
    assert fake.calls == 2  # and it is not asked again before the interval
    fake.down = False
    fake.now += 31
    await cache.key(SOURCE, kid)
    assert fake.calls == 3 and cache.fetches == 2


async def test_keys_never_had_is_503_not_a_refusal() -> None:
    fake = Fake(Issuer())
    fake.down = True
    cache = fake.cache()
    with pytest.raises(ServiceUnavailableError):
        await cache.key(SOURCE, "any")
    with pytest.raises(ServiceUnavailableError):
        await cache.key(SOURCE, "any")
    assert fake.calls == 1
