"""How a long-running command (store, agent, webhook, dev) runs: its event loop, its garbage
collector tuning and its signals (stdlib only; ``asyncio`` is imported by the functions that
need it, so importing this module starts no event loop machinery)."""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import signal
    from collections.abc import Callable, Coroutine, Iterator
    from typing import Any, TypeVar

    T = TypeVar("T")


def tune_gc() -> None:
    """Server-sized garbage collection: freeze what start-up built, and collect the young
    generation every 50,000 allocations, not 700. With thousands of held connections a default
    collection walks so many objects that waking them all at once stalled for a third of a
    second in the fan-out benchmark."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop's faster event loop when it is installed."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@contextlib.contextmanager
def signals_watched(
    on_hangup: Callable[[], None] | None = None,
) -> Iterator[asyncio.Future[signal.Signals]]:
    """Handle SIGTERM and SIGINT from now on (a second SIGINT exits at once): the future holds
    the first one. Enter it *before* announcing that the process is ready, so a SIGTERM sent as
    soon as the announcement is read stops it cleanly instead of killing it on the default
    handler. SIGHUP does not stop the process: it calls ``on_hangup`` (reopen log and audit
    files after a rotation)."""
    import asyncio
    import logging
    import signal

    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if got.done():
            if sig == signal.SIGINT:
                os._exit(130)
            return
        got.set_result(sig)

    def on_hup() -> None:
        log = logging.getLogger("loader")
        try:
            if on_hangup is not None:
                on_hangup()
        except OSError as exc:
            log.error("SIGHUP: could not reopen a file: %s", exc)
        else:
            log.info("SIGHUP: reopened the log and audit files (if any); still running")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        yield got
    finally:
        # SIGHUP stays handled while the process shuts down (a rotation must not kill it
        # while it finishes the audit batch in flight).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def until_signalled(on_hangup: Callable[[], None] | None = None) -> signal.Signals:
    """Wait for SIGTERM or SIGINT (see :func:`signals_watched`)."""
    with signals_watched(on_hangup) as got:
        return await got
