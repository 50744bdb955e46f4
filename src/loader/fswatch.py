"""Follow one file for changes with watchfiles (inotify), as Kubernetes updates them too, and
read it again when it may have changed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from loader.errors import ConfigError

T = TypeVar("T")


def reread(read: Callable[[], T], current: T | None, what: str, log: logging.Logger) -> T | None:
    """A followed file's content read again: the new content, or None when it is the same or
    cannot be read right now (caught half-written, removed for a moment: logged, and the
    previous content stays in use)."""
    try:
        content = read()
    except ConfigError as exc:
        log.warning("keeping the previous %s: %s", what, exc)
        return None
    return None if content == current else content


async def watch_file(path: Path, recheck: float = 1.0) -> AsyncIterator[None]:
    """Yield when ``path`` may have changed: written, replaced by a rename, or (ConfigMaps and
    projected volumes) its directory's ``..data`` symlink swapped. Other files are ignored.

    Also yields every ``recheck`` seconds without an event: the first of those comes after the
    watch is in place, so a caller that re-reads on every yield cannot miss a change made
    before the watch started (and the callers compare contents, so extra yields cost nothing).
    """
    from watchfiles import awatch

    target = str(path)

    def relevant(_change: object, changed: str) -> bool:
        return changed == target or Path(changed).name.startswith("..")

    async for _ in awatch(
        path.parent,
        watch_filter=relevant,
        debounce=50,
        step=20,
        recursive=False,
        yield_on_timeout=True,
        rust_timeout=int(recheck * 1000),
    ):
        yield
