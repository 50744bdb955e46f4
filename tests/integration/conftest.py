from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests import tools
from tests.pg import PostgresServer, find_bin
from tests.store_harness import Store, running_store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server per test process, with a migrated template database."""
    tools.require(find_bin(), "PostgreSQL (Debian package postgresql)")
    server = PostgresServer()
    server.start()
    try:
        server.psql("CREATE DATABASE loader_template")
        import asyncio

        from loader.store.postgres import PostgresRepository

        async def migrate() -> None:
            repo = await PostgresRepository.open(server.url("loader_template"), migrate=True)
            await repo.close()

        asyncio.run(migrate())
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> PostgresServer | None:
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server
    return None


@pytest.fixture
def make_store(
    tmp_path: Path, aiohttp_client: Any, backend: PostgresServer | None
) -> Callable[..., AbstractAsyncContextManager[Store]]:
    """``async with make_store(**settings) as store``: a store on this test's backend."""

    def make(**settings: Any) -> AbstractAsyncContextManager[Store]:
        return running_store(tmp_path / "store", aiohttp_client, pg=backend, **settings)

    return make


@pytest.fixture
async def store(
    make_store: Callable[..., AbstractAsyncContextManager[Store]],
) -> AsyncIterator[Store]:
    async with make_store() as harness:
        yield harness
