"""One read in flight per key, shared by every caller that asks for the same key meanwhile:
thousands of watchers woken at once by one change make one database read, not thousands.

The key says which callers may share: the record caches put in it what a joiner's answer must
not predate (the announcements heard so far), so a caller never gets a read begun before an
announcement it has already heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        """Reads in flight."""
        return len(self._pending)

    async def read(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """``read()``'s answer, or that of the same key's read already in flight."""
        pending = self._pending.get(key)
        if pending is not None:
            return await pending  # no shield: handlers are not cancelled on disconnect
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            value = await read()
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: the first caller re-raises it
            raise
        finally:
            del self._pending[key]
        if not fut.done():
            fut.set_result(value)
        return value
