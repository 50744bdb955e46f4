"""Token records in memory, dropped the moment their revocation is announced.

Authenticating a request costs a hash and a dictionary look-up, not a database read -- and a
revocation still bites on the very next request, and on requests already held, on every
replica. That rests on the repository's promise (:meth:`Repository.revocation_epoch`): once it
returns, every revocation committed before has been announced, and each announcement drops the
token here. A record is only kept when no revocation was announced while it was read, and only
under the epoch it was read in; without the promise (not listening), every look-up reads the
database. A kept record is read again after ``max_age`` seconds anyway.
"""

from __future__ import annotations

import time

from loader.store.models import TokenRecord
from loader.store.repository import Repository
from loader.store.sharedreads import SharedReads

MAX_ENTRIES = 10_000
MAX_AGE = 60.0


class TokenCache:
    def __init__(
        self, repo: Repository, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE
    ) -> None:
        self.repo = repo
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: dict[str, tuple[TokenRecord, float]] = {}
        self._epoch: int | None = None
        self._announced = 0  # revocations announced so far (any token)
        # Reads in flight, shared by the requests that ask for the same token between the
        # same two announcements: thousands of watchers woken at once share one read.
        self._reads: SharedReads[tuple[str, int], TokenRecord | None] = SharedReads()
        repo.subscribe_revocations(self._revoked)

    def _revoked(self, token_id: str) -> None:
        self._announced += 1
        self._entries.pop(token_id, None)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, token_id: str) -> TokenRecord | None:
        """The token's record as the database holds it now, revocations included."""
        epoch = await self.repo.revocation_epoch()
        if epoch is not None:
            if epoch != self._epoch:
                self._entries.clear()
                self._epoch = epoch
            kept = self._entries.get(token_id)
            if kept is not None and kept[1] > time.monotonic():
                return kept[0]
        announced = self._announced
        record = await self._read(token_id, announced)
        if (
            record is not None
            and epoch is not None
            and epoch == self._epoch
            and announced == self._announced
        ):
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_id] = (record, time.monotonic() + self.max_age)
        return record

    async def _read(self, token_id: str, announced: int) -> TokenRecord | None:
        return await self._reads.read((token_id, announced), lambda: self.repo.get_token(token_id))
