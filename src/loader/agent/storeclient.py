"""The agent's client for the store's runtime route (aiohttp, long-poll with ETags)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from loader import __version__
from loader.agent.snapshot import Snapshot
from loader.errors import LoaderError, ServiceUnavailableError, error_for_status


class StoreClient:
    def __init__(
        self,
        store_url: str,
        app: int,
        environment: str,
        *,
        names: list[str] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.base = store_url.rstrip("/")
        self.path = f"/v1/apps/{app}/environments/{quote(environment, safe='')}/rendered"
        self.names = names
        ssl_ctx: ssl.SSLContext | bool = True
        if ca_file is not None:
            ssl_ctx = ssl.create_default_context(cafile=str(ca_file))
            ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl = ssl_ctx
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StoreClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=4),
            headers={"User-Agent": f"loader-agent/{__version__}"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, token: str, etag: str | None, wait: float) -> Snapshot | None:
        """The environment's values, or None when ``etag`` is still current after ``wait``."""
        assert self._session is not None
        params = {"mode": "full"}
        if self.names:
            params["names"] = ",".join(self.names)
        headers = {"Authorization": f"Bearer {token}"}
        if etag is not None:
            headers["If-None-Match"] = etag
            if wait > 0:
                params["wait"] = f"{wait:g}"
        timeout = aiohttp.ClientTimeout(total=wait + 15, connect=10)
        try:
            async with self._session.get(
                self.base + self.path, params=params, headers=headers, timeout=timeout
            ) as resp:
                if resp.status == 304:
                    return None
                body = await resp.read()
                if resp.status != 200:
                    raise _error(resp.status, body, resp.headers.get("Retry-After"))
                data: dict[str, Any] = json.loads(body)
        except LoaderError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise ServiceUnavailableError(
                f"store {self.base} unreachable: {type(exc).__name__}{_reason(exc)}"
            ) from None
        return Snapshot(
            revision=int(data["revision"]),
            etag=resp.headers.get("ETag", ""),
            values=dict(data["secrets"]),
            unset=tuple(data.get("unset", ())),
        )


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f": {text}" if text and len(text) < 200 else ""


def _error(status: int, body: bytes, retry_after: str | None) -> LoaderError:
    message, code = f"store answered HTTP {status}", None
    try:
        data = json.loads(body)
        message, code = f"store: {data['error']}", data.get("code")
    except (ValueError, KeyError, TypeError):
        pass
    seconds = None
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = None
    return error_for_status(status, message, code, seconds)
