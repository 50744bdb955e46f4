"""Pick the repository for a database URL."""

from __future__ import annotations

from pathlib import Path

from loader.errors import ConfigError
from loader.store.repository import Repository


async def open_repository(url: str, *, migrate: bool = False) -> Repository:
    if url.startswith("sqlite:///"):
        from loader.store.sqlite import SQLiteRepository

        path = (
            Path(url[len("sqlite:///") - 1 :])
            if url.startswith("sqlite:////")
            else Path(url[len("sqlite:///") :])
        )
        if not path.parent.is_dir():
            raise ConfigError(f"database directory {path.parent} does not exist")
        return await SQLiteRepository.open(path, migrate=migrate)
    if url.startswith(("postgresql://", "postgres://")):
        from loader.store.postgres import PostgresRepository

        return await PostgresRepository.open(url, migrate=migrate)
    raise ConfigError("database url must start with sqlite:/// or postgresql://")
