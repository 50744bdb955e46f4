"""Where the agent's bearer token comes from: a setting, or a file re-read when it changes
(:class:`TokenSource`); or, with ``LOADER_AUTH=jwt``, access tokens traded for the workload's
JWT at the store and traded again before they expire (:class:`ExchangedTokens`).

Kubernetes rotates projected service-account tokens by swapping a ``..data`` symlink in the
token's directory, so the whole directory is watched (watchfiles), not just the file.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loader.errors import ConfigError
from loader.fsguard import read_token_file
from loader.fswatch import reread, watch_file
from loader.workload import Grant, read_grant, token_request

log = logging.getLogger("loader.agent")


class TokenSource:
    def __init__(self, token: str | None = None, path: Path | None = None) -> None:
        if token is None and path is None:
            raise ConfigError("a token is required: LOADER_TOKEN_FILE (or LOADER_TOKEN)")
        self.path = path
        self._token: str = read_token_file(path) if path is not None else str(token)
        self.changed = asyncio.Event()

    @property
    def token(self) -> str:
        return self._token

    async def current(self) -> str:
        return self._token

    def valid_for(self) -> float:
        """Seconds the token is good for before it must be renewed (a file's: no end)."""
        return math.inf

    def reload(self) -> bool:
        """Re-read the file; True (and ``changed`` set) when the token is different."""
        path = self.path
        if path is None:
            return False
        token = reread(lambda: read_token_file(path), self._token, "token", log)
        if token is None:
            return False
        self._token = token
        self.changed.set()
        log.info("token file %s changed; using the new token", self.path)
        return True

    async def watch(self) -> None:
        """Follow the token file until cancelled."""
        if self.path is None:
            await asyncio.Event().wait()
            return
        async for _ in watch_file(self.path):
            self.reload()


Exchange = Callable[[dict[str, str]], Awaitable[bytes]]
"""Posts a token request to the store's ``/oauth/token``; the answer's body (or raises)."""


class ExchangedTokens:
    """Access tokens for the workload's JWT (``LOADER_JWT_FILE``): the file is read afresh
    for each trade; a trade happens when the last token is a third from its end, after the
    store refused it, or when the file changed after a failed trade. ``changed`` is set when a
    new JWT arrives after a failure (the follower then retries at once)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        read_token_file(path)  # unreadable at start: a configuration error (exit 78) at once
        self.exchange: Exchange | None = None  # set once the store client is open
        self.changed = asyncio.Event()
        self._clock = clock
        self._grant: Grant | None = None
        self._jwt: str | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        async with self._lock:
            grant = self._grant
            if grant is None or grant.due(self._clock()):
                grant = self._grant = await self._trade()
            return grant.token

    async def _trade(self) -> Grant:
        assert self.exchange is not None, "bind the store client first"
        self._jwt = read_token_file(self.path)
        body = await self.exchange(token_request(self._jwt))
        grant = read_grant(body, self._clock())
        log.info(
            "traded the workload token (%s) for an access token good for %.0fs",
            self.path,
            grant.expires_at - self._clock(),
        )
        return grant

    def valid_for(self) -> float:
        grant = self._grant
        return grant.valid_for(self._clock()) if grant is not None else 0.0

    def reload(self) -> bool:
        """After a refusal: trade again at the next request (with the file as it is then);
        True when the file holds a new JWT."""
        self._grant = None
        path = self.path
        jwt = reread(lambda: read_token_file(path), self._jwt, "workload token", log)
        if jwt is None:
            return False
        self._jwt = jwt
        return True

    async def watch(self) -> None:
        """Follow the JWT file until cancelled: a new JWT while no access token is held (the
        last trade failed) wakes the follower at once."""
        async for _ in watch_file(self.path):
            if self._grant is None and self.reload():
                log.info("workload token file %s changed; trading it now", self.path)
                self.changed.set()
