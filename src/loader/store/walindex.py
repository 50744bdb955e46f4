"""Has anything been committed to a SQLite database (WAL mode) since we last looked?

The WAL index (the ``-shm`` file, https://www.sqlite.org/walformat.html) begins with a header
that every commit rewrites (its change counter, the last valid frame, the checksums), kept twice:
SQLite writes the second copy, then the first, and a reader trusts the header only when both
copies agree. Reading those 96 bytes costs one ``pread`` -- a fraction of the cheapest
statement -- so the store can tell on every request that nothing changed since its last read,
and serve that read again. Any doubt (torn copies, a missing or short file, an error) reads as
None: ask the database.

The descriptor stays open until every SQLite connection of the process is closed: POSIX record
locks belong to the process, and closing *any* descriptor of a file drops all of the process's
locks on it -- SQLite's own included, which would let another process reset the index under
the store. (It is read with ``pread``, never mapped: a file cut short under a mapping kills
the process with SIGBUS; a short read is only "unsure".)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_HEADER = 48  # bytes in one copy of the WAL-index header


class WalIndex:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-shm")
        self._fd: int | None = None

    def open(self) -> None:
        """Open the index (call with a connection to the database open); no file, no index."""
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def mark(self) -> bytes | None:
        """The header as of now (equal marks: no commit in between), or None when unsure."""
        if self._fd is None:
            return None
        try:
            raw = os.pread(self._fd, 2 * _HEADER, 0)
        except OSError:
            return None
        first, second = raw[:_HEADER], raw[_HEADER:]
        if len(second) != _HEADER or first != second or first[12] == 0:  # torn; isInit unset
            return None
        return first

    def close(self) -> None:
        """Only once the process's SQLite connections to the database are closed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
