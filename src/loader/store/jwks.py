"""Issuers' public keys (JWKS), cached: fetched over HTTPS (by the ``fetch`` the server gives,
:mod:`loader.server.issuers`) or read from a file.

A key set is used for ``max_age`` seconds, then fetched again at its next use (kept, and
logged, when the issuer cannot be reached: a brief outage of the issuer must not stop every
workload). A token naming a key id the cached set lacks -- the issuer rotated its keys -- makes
one refetch, at most once per ``refetch_interval`` per source, however many such tokens arrive
(a flood of made-up key ids costs the issuer nothing). Only asymmetric keys are kept (RSA, EC):
a symmetric ("oct") key in a JWKS is ignored, so no token can ever verify with HS*.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from loader.errors import ServiceUnavailableError

log = logging.getLogger("loader.store")

MAX_JWKS_BYTES = 256 * 1024
ASYMMETRIC = frozenset({"RSA", "EC"})

Source = tuple[str, str]
"""``("url", URL)`` or ``("file", PATH)``."""

Fetch = Callable[[Source], Awaitable[bytes]]


class JwksError(Exception):
    """A key set that cannot be had or read (the message says why, one line)."""


def parse_jwks(data: bytes) -> dict[str, jwt.PyJWK]:
    """``kid -> key`` of the usable asymmetric keys of a JWKS document."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError('not a JWKS (no "keys" list)')
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ASYMMETRIC:
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # an algorithm or curve PyJWT cannot use: skipped, like an unknown kty
    return keys


def read_jwks_file(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise JwksError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"{path}: larger than {MAX_JWKS_BYTES} bytes")
    return data


@dataclass
class _Entry:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched: float = float("-inf")  # monotonic time of the last successful fetch
    attempted: float = float("-inf")  # ... of the last attempt, successful or not
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    def __init__(
        self,
        fetch: Fetch,
        refetch_interval: float = 30.0,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refetch_interval, self.max_age = refetch_interval, max_age
        self._fetch, self._clock = fetch, clock
        self._entries: dict[Source, _Entry] = {}
        self.fetches = 0  # successful fetches, all sources (metrics, tests)

    async def key(self, source: Source, kid: str) -> jwt.PyJWK | None:
        """The key ``kid`` of ``source``, or None when the issuer does not (or no longer)
        publish it. Raises ServiceUnavailableError when the keys were never had."""
        entry = self._entries.setdefault(source, _Entry())
        if self._clock() - entry.fetched >= self.max_age:
            await self._refresh(source, entry)
        found = entry.keys.get(kid)
        if found is None:  # rotated at the issuer? Once per interval, however many ask
            await self._refresh(source, entry)
            found = entry.keys.get(kid)
        if found is None and entry.fetched == float("-inf"):
            raise ServiceUnavailableError("the issuer's keys (JWKS) cannot be fetched now", 5.0)
        return found

    async def _refresh(self, source: Source, entry: _Entry) -> None:
        asked = self._clock()
        async with entry.lock:
            if entry.attempted >= asked or asked - entry.attempted < self.refetch_interval:
                return  # fetched while this one waited, or too recently tried
            entry.attempted = self._clock()
            try:
                keys = parse_jwks(await self._fetch(source))
            except JwksError as exc:
                log.warning("JWKS %s: %s (keeping %d cached keys)", source[1], exc, len(entry.keys))
                return
            entry.keys, entry.fetched = keys, self._clock()
            self.fetches += 1
