"""An in-process store (real aiohttp app; real SQLite files or a real PostgreSQL database) for
the API tests. The same tests run on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from loader.crypto import Keyring
from loader.server.app import create_app, store_state
from loader.server.settings import StoreSettings
from loader.server.shared import Limiter, ServerState
from loader.store.auth import issue_token
from loader.store.keyfile import KeyringFile, StaticKeyring, write_key_file
from tests.pg import PostgresServer


@dataclass
class Store:
    client: TestClient[Any, Any]
    state: ServerState
    admin: str
    data_dir: Path
    keyring: Keyring
    backend: str = "sqlite"
    database_url: str | None = None
    pg: PostgresServer | None = None

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

    async def oauth_client(
        self, *scopes: str, app: int | None = None, envs: tuple[str, ...] | None = None
    ) -> tuple[str, str]:
        """An OAuth client, as `loader store client create` makes one: (client_id, secret)."""
        record, secret = await issue_token(
            self.state.service.repo, frozenset(scopes), app_id=app, environments=envs, kind="client"
        )
        return record.id, secret

    async def access_token(self, client_id: str, secret: str) -> tuple[str, int]:
        """``POST /oauth/token``: (access token, expires_in)."""
        resp = await self.client.post(
            "/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return str(body["access_token"]), int(body["expires_in"])

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

    # -- reaching under the API (tamper tests, leak hunts) ---------------------------------

    async def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run SQL on the backing database directly, as an attacker with DB access could."""
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.data_dir / "loader.db")
            try:
                rows = conn.execute(statement).fetchall()
                conn.commit()
                return [tuple(r) for r in rows]
            finally:
                conn.close()
        import asyncpg

        assert self.database_url is not None
        conn = await asyncpg.connect(self.database_url)
        try:
            return [tuple(r) for r in await conn.fetch(statement)]
        finally:
            await conn.close()

    async def disk_files(self) -> list[Path]:
        """Every file the database keeps on disk (after a checkpoint, for PostgreSQL)."""
        if self.backend == "sqlite":
            return sorted(p for p in self.data_dir.iterdir() if p.name.startswith("loader.db"))
        assert self.pg is not None
        await self.sql("CHECKPOINT")
        return self.pg.data_files()


@asynccontextmanager
async def running_store(
    data_dir: Path,
    aiohttp_client: Any,
    limiter: Limiter | None = None,
    pg: PostgresServer | None = None,
    key_file: bool = False,
    **settings: Any,
) -> AsyncIterator[Store]:
    """``key_file``: the store reads (and re-reads) its master key file, as ``serve`` does."""
    keyring = Keyring.generate()
    data_dir.mkdir(parents=True, exist_ok=True)
    write_key_file(data_dir / "master.key", keyring)
    database_url = None
    if pg is not None:
        database_url = pg.url(pg.create_database(template="loader_template"))
        settings = {
            **settings,
            "database_url": database_url,
            "master_key_file": data_dir / "master.key",
        }
    store_settings = StoreSettings(data_dir=data_dir, migrate=True, **settings)
    keys = KeyringFile(data_dir / "master.key") if key_file else StaticKeyring(keyring)
    async with store_state(store_settings, keys=keys, limiter=limiter) as state:
        client = await aiohttp_client(create_app(state))
        _, admin = await issue_token(state.service.repo, frozenset({"*"}))
        yield Store(
            client,
            state,
            admin,
            data_dir,
            keyring,
            backend="postgres" if pg else "sqlite",
            database_url=database_url,
            pg=pg,
        )


@asynccontextmanager
async def running_replica(
    store: Store, aiohttp_client: Any, name: str = "b"
) -> AsyncIterator[Store]:
    """Another in-process store replica on ``store``'s PostgreSQL database (same master key),
    with its own repository, LISTEN connection, caches and client."""
    assert store.database_url is not None
    data_dir = store.data_dir.parent / f"replica-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = StoreSettings(
        data_dir=data_dir,
        database_url=store.database_url,
        master_key_file=store.data_dir / "master.key",
    )
    async with store_state(settings, keys=StaticKeyring(store.keyring)) as state:
        client = await aiohttp_client(create_app(state))
        yield Store(
            client,
            state,
            store.admin,
            data_dir,
            store.keyring,
            backend="postgres",
            database_url=store.database_url,
            pg=store.pg,
        )
