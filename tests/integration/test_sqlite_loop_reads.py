"""A woken watcher's values are read on the event loop's own SQLite connection when the read is
short (no reader thread's round trip between a change and its answer), and on a reader thread
when it is not: the same snapshot either way."""

from __future__ import annotations

from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from loader.store import sqlite
from tests.store_harness import running_store

N = 50  # secrets: a read of a few thousand steps (SQLite calls the step budget's check per 1,000)


class Counting(Executor):
    """The repository's reader pool, counting what is handed to it."""

    def __init__(self, inner: Executor) -> None:
        self.inner, self.submitted = inner, 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


async def test_values_are_read_on_the_loop_and_long_reads_go_to_a_thread(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_store(tmp_path / "store", aiohttp_client) as store:
        app = await store.app()
        for i in range(N):
            await store.put(app, f"S{i}", f"value-{i}")
        repo = store.state.service.repo
        assert isinstance(repo, sqlite.SQLiteRepository)
        readers = Counting(repo._readers)
        repo._readers = readers  # type: ignore[assignment]
        env = await store.state.service.environment(app)

        on_loop = await repo.read_values(env, None)
        assert readers.submitted == 0  # read on the loop's connection
        assert [v.name for v in on_loop.values] == sorted(f"S{i}" for i in range(N))

        monkeypatch.setattr(sqlite, "LOOP_STEPS", 0)  # every loop statement is "too long"
        on_thread = await repo.read_values(env, None)
        assert readers.submitted == 1  # interrupted on the loop, read again on a thread
        assert on_thread == on_loop
        assert not repo._loop_connection().in_transaction  # the interrupted read was ended

        monkeypatch.setattr(sqlite, "LOOP_STEPS", 20)
        assert await store.reveal(app) == {f"S{i}": f"value-{i}" for i in range(N)}
