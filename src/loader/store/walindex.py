"""Has anything been committed to a SQLite database (WAL mode) since we last looked?

The WAL index (the ``-shm`` file, https://www.sqlite.org/walformat.html) begins with a header
that every commit rewrites (its change counter, the last valid frame, the checksums), kept twice:
SQLite writes the second copy, then the first, and a reader trusts the header only when both
copies agree. Those 96 bytes are mapped into memory: reading them is a copy, not a system
call (a call would hand the interpreter's lock to another thread), so the store can tell on every
request that nothing changed since its last read, and serve that read again. Any doubt (torn
copies, a missing or short file) reads as None: ask the database.

The mapping is safe while a connection of the store is open: SQLite truncates the file only
for the first connection to a database nobody else has open (:meth:`WalIndex.open` is called
with one open, and :meth:`WalIndex.close` before it closes).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

_HEADER = 48  # bytes in one copy of the WAL-index header


class WalIndex:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-shm")
        self._map: mmap.mmap | None = None

    def open(self) -> None:
        """Map the header (call with a connection to the database open); no file, no map."""
        if self._map is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size >= 2 * _HEADER:
                self._map = mmap.mmap(fd, 2 * _HEADER, access=mmap.ACCESS_READ)
        except OSError:
            pass
        finally:
            os.close(fd)

    def mark(self) -> bytes | None:
        """The header as of now (equal marks: no commit in between), or None when unsure."""
        if self._map is None:
            return None
        first, second = self._map[:_HEADER], self._map[_HEADER : 2 * _HEADER]
        if first != second or first[12] == 0:  # torn, or isInit unset
            return None
        return first

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
