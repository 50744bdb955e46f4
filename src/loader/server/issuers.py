"""Fetch an issuer's keys (JWKS) for :class:`loader.store.jwks.JwksCache`: over HTTP(S) with
aiohttp (bounded in time and size), or from a file (a cluster whose issuer the store cannot
reach: ``kubectl get --raw /openid/v1/jwks`` saved to a ConfigMap)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from loader.store.jwks import MAX_JWKS_BYTES, JwksError, Source, read_jwks_file

TIMEOUT = 5.0


async def fetch_jwks(source: Source) -> bytes:
    kind, where = source
    if kind == "file":
        return await asyncio.to_thread(read_jwks_file, Path(where))
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.get(where, headers={"Accept": "application/json"}) as resp,
        ):
            if resp.status != 200:
                raise JwksError(f"answered HTTP {resp.status}")
            body = await resp.content.read(MAX_JWKS_BYTES + 1)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise JwksError(f"unreachable: {type(exc).__name__}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
    return body
