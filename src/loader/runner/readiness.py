"""When is a restarted child healthy? ``--ready-check`` (a command that exits 0, or an http(s)
URL that answers 2xx, tried every half second) and/or ``--min-ready`` (the child survives that
long), within ``--ready-timeout``. Neither given: healthy once started.
"""

from __future__ import annotations

import asyncio
import contextlib

from loader.errors import LoaderError
from loader.runner import http

POLL = 0.5
CHECK_TIMEOUT = 5.0


async def passes(check: str) -> bool:
    """One try of ``check``: a URL answering 2xx, or a shell command exiting 0."""
    if check.startswith(("http://", "https://")):
        target = http.target(check)
        try:
            resp = await http.aget(check, "" if target.base_path else "/", {}, CHECK_TIMEOUT)
        except LoaderError:
            return False
        return 200 <= resp.status < 300
    proc = await asyncio.create_subprocess_shell(
        check, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await proc.wait() == 0
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False


async def wait_ready(
    child: asyncio.subprocess.Process, check: str | None, min_ready: float, timeout: float
) -> str | None:
    """None once ``child`` is healthy; else why it is not (it exited, or the time ran out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if check:
        while not await passes(check):
            if child.returncode is not None:
                return f"it exited with status {child.returncode} before it was ready"
            if loop.time() >= deadline:
                return f"--ready-check did not pass within {timeout:g}s"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), POLL)
    if child.returncode is not None:
        return f"it exited with status {child.returncode}"
    if min_ready > 0:
        try:
            await asyncio.wait_for(child.wait(), min_ready)
        except TimeoutError:
            return None
        return f"it exited with status {child.returncode} within --min-ready {min_ready:g}s"
    return None
