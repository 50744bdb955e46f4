"""Follow one file for changes with watchfiles (inotify), as Kubernetes updates them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path


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
