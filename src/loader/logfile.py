"""A log file that SIGHUP reopens at its path (stdlib only)."""

from __future__ import annotations

import logging


class ReopeningFileHandler(logging.FileHandler):
    """After ``logrotate`` moved the file away, :meth:`reopen` starts a new one at the path."""

    def reopen(self) -> None:
        self.acquire()
        try:
            old, self.stream = self.stream, self._open()
            if old is not None:
                old.close()
        finally:
            self.release()
