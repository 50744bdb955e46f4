"""Environment records in memory on a PostgreSQL replica, dropped the moment a change to them
is announced -- so a request finds its environment with a dictionary look-up, not a database
read, and still never gets a record older than the changes this replica has heard of.

Every change to an environment (a write, a delete, its app's delete) bumps its revision and
sends ``NOTIFY loader_changes`` with its id and new revision inside the transaction; the
committing replica announces it at commit, the others when the notification reaches their
LISTEN connection. Each announcement drops the environment's record here unless the record is
already at that revision or past it (a replica hears its own commits twice: at commit and by
NOTIFY; no record of a deleted environment is as new as its delete). That rests on the same
promise as the token cache (:mod:`loader.store.tokencache`): while the LISTEN connection is up,
no notification is missed, so records are kept only under the epoch (one per LISTEN
connection) they were read in; a new epoch forgets everything, and with no epoch (not
listening) every look-up reads the database. A record read while a change to it was announced
is kept only if it is at least as new as the change. A miss is never kept: a new environment
is found at once. A kept record is read again after ``max_age`` seconds anyway, and at most
``max_entries`` are kept (the oldest go first).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from loader.store.models import Environment
from loader.store.sharedreads import SharedReads

MAX_ENTRIES = 10_000
MAX_AGE = 60.0

Read = Callable[[int, str], Awaitable[Environment | None]]
"""Reads environment ``(app_id, name)`` from the database (None: there is none)."""

Epoch = Callable[[], int | None]
"""The repository's current epoch: changes a new number, None while not listening."""

_Key = tuple[int, str]


class EnvironmentCache:
    def __init__(
        self, read: Read, epoch: Epoch, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE
    ) -> None:
        self._read_db = read
        self._current_epoch = epoch
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: dict[_Key, tuple[Environment, float]] = {}
        self._keys: dict[int, _Key] = {}  # environment id -> its entry's key
        self._epoch: int | None = None
        self._announced = 0  # changes announced so far (any environment)
        # While reads are in flight: the newest revision announced of each environment (a read
        # keeps its record only if it is at least that new). Cleared when no read is in flight;
        # past ``max_entries`` ids it is cleared and ``_floor`` set instead: reads begun before
        # that announcement keep nothing.
        self._touched: dict[int, int] = {}
        self._floor = 0
        self._in_flight = 0
        self._reads: SharedReads[tuple[int, str, int, int], Environment | None] = SharedReads()

    def __len__(self) -> int:
        return len(self._entries)

    def changed(self, env_id: int, revision: int) -> None:
        """``env_id``'s change to ``revision`` was committed (a repository's change listener)."""
        self._announced += 1
        key = self._keys.get(env_id)
        if key is not None and self._entries[key][0].revision < revision:
            self._forget(key)
        if self._in_flight:
            if len(self._touched) >= self.max_entries:
                self._touched.clear()
                self._floor = self._announced
            self._touched[env_id] = max(revision, self._touched.get(env_id, revision))

    def clear(self) -> None:
        """Forget every record (a change was announced that names no environment)."""
        self._announced += 1
        self._floor = self._announced
        self._entries.clear()
        self._keys.clear()

    async def get(self, app_id: int, name: str) -> Environment | None:
        """Environment ``(app_id, name)`` with every change announced so far."""
        epoch = self._current_epoch()
        if epoch is None:
            return await self._read_db(app_id, name)
        if epoch != self._epoch:
            self._entries.clear()
            self._keys.clear()
            self._epoch = epoch
        key = (app_id, name)
        kept = self._entries.get(key)
        if kept is not None:
            if kept[1] > time.monotonic():
                return kept[0]
            self._forget(key)
        announced = self._announced
        return await self._reads.read(
            (app_id, name, epoch, announced), lambda: self._read(key, epoch, announced)
        )

    async def _read(self, key: _Key, epoch: int, announced: int) -> Environment | None:
        self._in_flight += 1
        try:
            record = await self._read_db(*key)
            if (
                record is not None
                and epoch == self._epoch == self._current_epoch()
                and announced >= self._floor
                and record.revision >= self._touched.get(record.id, record.revision)
            ):
                self._keep(key, record)
            return record
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._touched.clear()

    def _keep(self, key: _Key, record: Environment) -> None:
        self._forget(key)
        if len(self._entries) >= self.max_entries:
            self._forget(next(iter(self._entries)))  # the oldest
        stale = self._keys.get(record.id)
        if stale is not None:  # (the same environment under another key: not kept twice)
            self._forget(stale)
        self._entries[key] = (record, time.monotonic() + self.max_age)
        self._keys[record.id] = key

    def _forget(self, key: _Key) -> None:
        gone = self._entries.pop(key, None)
        if gone is not None:
            self._keys.pop(gone[0].id, None)
