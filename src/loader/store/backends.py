"""Pick the repository for a database URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loader.errors import ConfigError
from loader.store.health import DatabaseTimeouts
from loader.store.repository import Repository
from loader.store.sqlitefile import sqlite_path


async def open_repository(
    url: str,
    *,
    migrate: bool = False,
    init_empty: bool = False,
    lock: bool = False,
    timeouts: DatabaseTimeouts | None = None,
    application_name: str = "loader-admin",
) -> Repository:
    """``migrate``: create or upgrade the schema; ``init_empty``: create it even where a store
    lived before (SQLite); ``lock``: hold the SQLite database's lock (one ``serve`` or
    ``migrate`` at a time); ``application_name``: how PostgreSQL lists the connections."""
    if url.startswith("sqlite:///"):
        from loader.store.sqlite import SQLiteRepository

        path = sqlite_path(url)
        if not path.parent.is_dir():
            raise ConfigError(f"database directory {path.parent} does not exist")
        return await SQLiteRepository.open(
            path, migrate=migrate, init_empty=init_empty, exclusive=lock, timeouts=timeouts
        )
    if url.startswith(("postgresql://", "postgres://")):
        from loader.store.postgres import PostgresRepository

        return await PostgresRepository.open(
            url,
            migrate=migrate,
            timeouts=timeouts,
            application_name=application_name,
        )
    raise ConfigError("database url must start with sqlite:/// or postgresql://")


@asynccontextmanager
async def opened_repository(url: str, **options: Any) -> AsyncIterator[Repository]:
    """:func:`open_repository` (same options) for the length of a block, closed after it."""
    repo = await open_repository(url, **options)
    try:
        yield repo
    finally:
        await repo.close()
