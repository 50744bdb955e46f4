"""The agent's client for the store's runtime route (aiohttp, long-poll with ETags)."""

from __future__ import annotations

import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from loader import __version__
from loader.agent.snapshot import Snapshot
from loader.consumer import HEADER, Report
from loader.errors import (
    InsufficientScopeError,
    ServiceUnavailableError,
    UnreachableError,
    error_from_response,
    nobody_listening,
    tls_failure,
)
from loader.httpclient import route_template
from loader.names import APP_LOOKUP_SCOPE, find_app

log = logging.getLogger("loader.agent")


class StoreClient:
    def __init__(
        self,
        store_url: str,
        app: int | str,
        environment: str,
        *,
        names: list[str] | None = None,
        ca_file: Path | None = None,
        report: Report | None = None,
    ) -> None:
        self.base = store_url.rstrip("/")
        self.report = report  # sent on every read (X-Loader-Consumer): who asks, what it holds
        self.app = app  # an id, or a name looked up with the first request's token
        self.environment = environment
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

    @property
    def path(self) -> str:
        return f"/v1/apps/{self.app}/environments/{quote(self.environment, safe='')}/rendered"

    async def _get(
        self, path: str, params: dict[str, str], headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes, Any]:
        return await self._request("GET", path, params, headers, timeout)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        timeout: float,
        form: dict[str, str] | None = None,
    ) -> tuple[int, bytes, Any]:
        assert self._session is not None
        started = time.perf_counter()
        try:
            async with self._session.request(
                method,
                self.base + path,
                params=params,
                headers=headers,
                data=form,
                timeout=aiohttp.ClientTimeout(total=timeout, connect=10),
            ) as resp:
                body = await resp.read()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "%s %s -> %d in %.1f ms",
                        method,
                        route_template(path),
                        resp.status,
                        (time.perf_counter() - started) * 1000,
                    )
                return resp.status, body, resp.headers
        except aiohttp.ClientSSLError as exc:
            raise tls_failure(f"store {self.base}", str(exc)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            cls = UnreachableError if _no_connection(exc) else ServiceUnavailableError
            raise cls(
                f"store {self.base} unreachable: {type(exc).__name__}{_reason(exc)}"
            ) from None

    async def exchange(self, request: dict[str, str]) -> bytes:
        """``POST /oauth/token`` (form-encoded, as OAuth has it); the 200 answer's body."""
        status, body, headers = await self._request("POST", "/oauth/token", {}, {}, 15, request)
        if status != 200:
            raise error_from_response(status, body, headers.get("Retry-After"), "store")
        return body

    async def resolve_app(self, token: str) -> int:
        """The app id (looked up by name once, when the app was given by name)."""
        if isinstance(self.app, int):
            return self.app
        status, body, headers = await self._get(
            "/v1/apps", {}, {"Authorization": f"Bearer {token}"}, 15
        )
        if status == 403:
            raise InsufficientScopeError(f"LOADER_APP={self.app}: {APP_LOOKUP_SCOPE}")
        if status != 200:
            raise error_from_response(status, body, headers.get("Retry-After"), "store")
        app_id = find_app(json.loads(body)["apps"], self.app)
        log.info("app %s is app id %d", self.app, app_id)
        self.app = app_id
        return app_id

    async def fetch(self, token: str, etag: str | None, wait: float) -> Snapshot | None:
        """The environment's values, or None when ``etag`` is still current after ``wait``."""
        assert self._session is not None
        await self.resolve_app(token)
        params = {"mode": "full"}
        if self.names:
            params["names"] = ",".join(self.names)
        headers = {"Authorization": f"Bearer {token}"}
        if self.report is not None:
            headers[HEADER] = self.report.header()
        if etag is not None:
            headers["If-None-Match"] = etag
            if wait > 0:
                params["wait"] = f"{wait:g}"
        status, body, resp_headers = await self._get(self.path, params, headers, wait + 15)
        if status == 304:
            return None
        if status != 200:
            raise error_from_response(status, body, resp_headers.get("Retry-After"), "store")
        try:
            data: dict[str, Any] = json.loads(body)
        except ValueError:
            raise ServiceUnavailableError(f"store {self.base} answered with bad JSON") from None
        return Snapshot(
            revision=int(data["revision"]),
            etag=resp_headers.get("ETag", ""),
            values=dict(data["secrets"]),
            unset=tuple(data.get("unset", ())),
        )


def _no_connection(exc: BaseException) -> bool:
    """Refused, reset or dropped mid-answer: the store is down or restarting."""
    return isinstance(exc, aiohttp.ServerDisconnectedError) or nobody_listening(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f": {text}" if text and len(text) < 200 else ""
