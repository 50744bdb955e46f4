"""A ``--watch`` runner's part in a rollout: what it reports, the restart slot it takes before a
restart and gives back once the new child is healthy, and going back to the previous revision
when the new child does not become healthy.

* The report (:mod:`loader.consumer`) rides on the runner's long-poll to the store; a change of
  it re-issues the long-poll at once (:meth:`~loader.runner.sources.StoreSource.nudge`).
* Before a restart the runner asks the store for a slot (``POST .../restarts``), again and
  again with jittered backoff (0.5 s doubling to 4 s) while the budget is spent or the rollout
  is paused; a newer revision arriving meanwhile is the one it restarts to. While the store
  cannot be reached the old child keeps running. The slot's lease is renewed while the new
  child gets ready.
* The new child is healthy when :func:`~loader.runner.readiness.wait_ready` says so; then the
  slot is released (``DELETE .../restarts``) with ``health=healthy``. If not, the runner starts
  the child again with the previous revision's secrets and releases the slot with
  ``health=failed;failed=REVISION``: the store pauses the rollout (no more slots for that
  revision) until a newer revision is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from loader.backoff import Backoff, Outage
from loader.consumer import HEADER, Report
from loader.errors import LoaderError, UsageError, error_from_response
from loader.runner import http
from loader.runner.sources import StoreSource

log = logging.getLogger("loader.run")


def revision_of(values: Mapping[str, str]) -> int | None:
    """The store revision ``values`` came from (None from a file or an agent)."""
    revision: int | None = getattr(values, "revision", None)
    return revision


class RestartSlots:
    """The store's restart budget, as one runner uses it."""

    def __init__(self, source: StoreSource, report: Report) -> None:
        self.source, self.report = source, report
        self.lease = 90.0

    def _path(self) -> str:
        from urllib.parse import quote

        env = quote(self.source.environment, safe="")
        return f"/v1/apps/{self.source.app}/environments/{env}/restarts"

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> Any:
        s = self.source
        headers = {"Authorization": f"Bearer {await s.bearer()}", HEADER: self.report.header()}
        resp = await http.arequest(
            method,
            s.url,
            self._path(),
            headers,
            s.timeout,
            s.ca_file,
            json.dumps(body).encode() if body is not None else None,
        )
        if resp.status != 200:
            raise error_from_response(
                resp.status, resp.body, resp.headers.get("retry-after"), "store"
            )
        return resp.json()

    async def acquire(self, revision: int) -> dict[str, Any]:
        grant: dict[str, Any] = await self._call("POST", {"revision": revision})
        self.lease = float(grant.get("lease_seconds") or self.lease)
        return grant

    async def release(self) -> None:
        await self._call("DELETE")


class Rollout:
    """What a supervisor does around a restart (see the module's docstring)."""

    def __init__(
        self,
        source: object,
        *,
        consumer_id: str | None,
        ready_check: str | None,
        min_ready: float,
        ready_timeout: float,
    ) -> None:
        self.ready_check, self.min_ready, self.ready_timeout = ready_check, min_ready, ready_timeout
        self.report: Report | None = None
        self.slots: RestartSlots | None = None
        self._retry: asyncio.Task[None] | None = None
        self.source = source if isinstance(source, StoreSource) else None
        if self.source is not None:
            from loader.consumer import ReportError, new_report, parse

            self.report = new_report("runner", consumer_id)
            try:
                parse(self.report.header())
            except ReportError as exc:
                raise UsageError(f"run: --consumer-id: {exc}") from None
            self.source.report = self.report
            self.slots = RestartSlots(self.source, self.report)

    def reported(self, **fields: int | str | None) -> None:
        """Change the report and send it now (the long-poll is re-issued)."""
        if self.report is not None and self.source is not None:
            self.report.update(**fields)
            self.source.nudge()

    def failed_here(self, values: Mapping[str, str]) -> bool:
        """``values`` are of the revision this runner's child failed at (wait for a newer)."""
        revision = revision_of(values)
        return revision is not None and self.report is not None and self.report.failed == revision

    async def slot(
        self,
        fresh: Callable[[dict[str, str]], dict[str, str]],
        values: dict[str, str],
        stopping: Callable[[], bool],
    ) -> dict[str, str] | None:
        """Wait for a restart slot; returns the values to restart with (the newest that came
        meanwhile, via ``fresh(values)``), or None when the runner is stopping."""
        if self.slots is None:
            return values
        backoff = Backoff(0.5, 4.0)
        outage = Outage(log, "restart budget")
        waiting_logged = False
        while not stopping():
            values = fresh(values)
            revision = revision_of(values)
            if revision is None:
                return values
            if self.failed_here(values):
                return None
            self.reported(rendered=revision, health="waiting")
            try:
                grant = await self.slots.acquire(revision)
            except LoaderError as exc:
                delay = backoff.next(getattr(exc, "retry_after", None))
                outage.failed(
                    f"cannot ask for a restart slot, keeping the running app: {exc}", delay
                )
                await asyncio.sleep(delay)
                continue
            outage.recovered()
            if grant["granted"]:
                return values
            if not waiting_logged:
                why = (
                    "the rollout is paused"
                    if grant["reason"] == "paused"
                    else "every slot is taken"
                )
                log.info("revision %d: waiting for a restart slot (%s)", revision, why)
                waiting_logged = True
            await asyncio.sleep(backoff.next())
        return None

    async def settle(self, child: asyncio.subprocess.Process, revision: int | None) -> str | None:
        """Wait until the new ``child`` is healthy (renewing the slot's lease meanwhile); None
        when it is, else why not."""
        from loader.runner.readiness import wait_ready

        self.reported(rendered=revision, running=revision, health="starting")
        renewer = asyncio.create_task(self._renew(revision)) if self.slots else None
        try:
            return await wait_ready(child, self.ready_check, self.min_ready, self.ready_timeout)
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer

    async def _renew(self, revision: int | None) -> None:
        assert self.slots is not None
        while revision is not None:
            await asyncio.sleep(self.slots.lease / 3)
            with contextlib.suppress(LoaderError):
                await self.slots.acquire(revision)

    async def done(self, revision: int | None, failed: bool, running: int | None) -> None:
        """Report the outcome and give the slot back (the lease frees it if the store cannot
        be told)."""
        if failed:
            self.reported(running=running, health="healthy", failed=revision)
        else:
            self.reported(running=revision, health="healthy", failed=None)
        if self.slots is not None:
            try:
                await self.slots.release()
            except LoaderError as exc:
                log.warning("could not give the restart slot back yet: %s", exc)
                self._retry = asyncio.create_task(self._release_later())

    async def _release_later(self) -> None:
        """Keep trying to give the slot back (a store outage) until its lease would end."""
        assert self.slots is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.slots.lease
        backoff = Backoff(0.5, 5.0)
        while loop.time() < deadline:
            await asyncio.sleep(backoff.next())
            try:
                await self.slots.release()
            except LoaderError:
                continue
            log.warning("restart slot given back")
            return
