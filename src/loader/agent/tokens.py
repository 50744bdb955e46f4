"""Where the agent's bearer token comes from: a setting, or a file re-read when it changes.

Kubernetes rotates projected service-account tokens by swapping a ``..data`` symlink in the
token's directory, so the whole directory is watched (watchfiles), not just the file.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from loader.errors import ConfigError
from loader.fsguard import read_token_file
from loader.fswatch import reread, watch_file

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
