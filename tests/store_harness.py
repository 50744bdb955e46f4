"""An in-process store (real aiohttp app, real SQLite files) for the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from loader.crypto import Keyring
from loader.server.app import create_app, store_state
from loader.server.state import Limiter, ServerState
from loader.settings import StoreSettings
from loader.store.auth import issue_token
from loader.store.keyfile import StaticKeyring, write_key_file


@dataclass
class Store:
    client: TestClient[Any, Any]
    state: ServerState
    admin: str
    data_dir: Path
    keyring: Keyring

    async def token(
        self,
        *scopes: str,
        app: int | None = None,
        envs: tuple[str, ...] | None = None,
        ttl: float | None = None,
    ) -> str:
        _, token = await issue_token(
            self.state.service.repo, frozenset(scopes), app_id=app, environments=envs, ttl=ttl
        )
        return token

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def app(self, name: str = "app") -> int:
        resp = await self.client.post(
            "/v1/apps", json={"name": name}, headers=self.auth(self.admin)
        )
        assert resp.status == 201, await resp.text()
        return int((await resp.json())["id"])

    async def env(self, app: int, name: str) -> None:
        resp = await self.client.post(
            f"/v1/apps/{app}/environments", json={"name": name}, headers=self.auth(self.admin)
        )
        assert resp.status == 201, await resp.text()

    async def put(self, app: int, name: str, value: str, env: str = "default") -> dict[str, Any]:
        resp = await self.client.post(
            f"/v1/apps/{app}/environments/{env}/secrets",
            json={"name": name, "value": value},
            headers=self.auth(self.admin),
        )
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())

    async def reveal(self, app: int, env: str = "default") -> dict[str, str]:
        resp = await self.client.get(
            f"/v1/apps/{app}/environments/{env}/rendered?mode=full", headers=self.auth(self.admin)
        )
        assert resp.status == 200, await resp.text()
        return dict((await resp.json())["secrets"])

    async def revision(self, app: int, env: str = "default") -> int:
        resp = await self.client.get(
            f"/v1/apps/{app}/environments/{env}", headers=self.auth(self.admin)
        )
        return int((await resp.json())["revision"])


@asynccontextmanager
async def running_store(
    data_dir: Path, aiohttp_client: Any, limiter: Limiter | None = None, **settings: Any
) -> AsyncIterator[Store]:
    keyring = Keyring.generate()
    write_key_file(data_dir / "master.key", keyring)
    store_settings = StoreSettings(data_dir=data_dir, migrate=True, **settings)
    async with store_state(store_settings, keys=StaticKeyring(keyring), limiter=limiter) as state:
        client = await aiohttp_client(create_app(state))
        _, admin = await issue_token(state.service.repo, frozenset({"*"}))
        yield Store(client, state, admin, data_dir, keyring)
