"""Runner-like consumers for the rollout benchmark: N asyncio tasks in one process, each doing
what ``loader run --watch`` does on the wire (:mod:`loader.runner.rollout`) -- a long-poll
carrying its X-Loader-Consumer report; on a new revision, a restart slot asked for with
jittered backoff until granted; a "restart" of ``--min-ready`` seconds; the slot given back
with health=healthy. Prints {"ready": true} once every consumer holds its first revision, then
one JSON line when told to stop (a line on stdin): every slot it was granted and released.

    python -m bench.rollout_client URLS TOKEN APP FIRST N MIN_READY
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from loader.backoff import Backoff
from loader.consumer import HEADER, Report
from loader.runner import http

WAIT = 30


class Consumer:
    def __init__(self, url: str, token: str, app: str, cid: str, min_ready: float) -> None:
        self.url, self.token, self.min_ready = url, token, min_ready
        self.path = f"/v1/apps/{app}/environments/default"
        self.report = Report(cid, "runner", "bench", "0", seq=int(time.time() * 1000))
        self.intervals: list[tuple[int, float, float]] = []
        self.requests = 0
        self.errors = 0

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", HEADER: self.report.header(), **extra}

    async def call(self, method: str, path: str, body: dict[str, int] | None = None) -> object:
        """As the runner does: errors (a 503 from a busy store) are retried with backoff."""
        raw = json.dumps(body).encode() if body is not None else None
        backoff = Backoff(0.5, 8.0)
        while True:
            self.requests += 1
            try:
                resp = await http.arequest(method, self.url, path, self.headers(), 30, None, raw)
            except Exception:
                resp = None
            if resp is not None and resp.status == 200:
                return resp.json()
            self.errors += 1
            await asyncio.sleep(backoff.next())

    async def run(self, ready: asyncio.Event, count: list[int], total: int) -> None:
        etag = None
        while True:
            self.requests += 1
            extra = {"If-None-Match": etag} if etag else {}
            try:
                resp = await http.aget(
                    self.url,
                    f"{self.path}/rendered?mode=full&format=json&wait={WAIT}",
                    self.headers(**extra),
                    WAIT + 15,
                )
            except Exception:
                await asyncio.sleep(random.uniform(0.5, 1.5))
                continue
            if resp.status != 200:
                if resp.status != 304:
                    self.errors += 1
                    await asyncio.sleep(random.uniform(0.5, 1.5))
                continue
            etag = resp.headers.get("etag")
            revision = int(resp.json()["revision"])
            if self.report.running is None:
                self.report.update(rendered=revision, running=revision, health="healthy")
                count[0] += 1
                if count[0] == total:
                    ready.set()
                continue
            await self.restart(revision)

    async def restart(self, revision: int) -> None:
        self.report.update(rendered=revision, health="waiting")
        backoff = Backoff(0.5, 4.0)  # as loader.runner.rollout
        while True:
            grant = await self.call("POST", f"{self.path}/restarts", {"revision": revision})
            assert isinstance(grant, dict)
            if grant["granted"]:
                break
            await asyncio.sleep(backoff.next())
        granted = time.time()
        self.report.update(running=revision, health="starting")
        await asyncio.sleep(self.min_ready)  # the new child gets ready
        released = time.time()
        self.report.update(health="healthy")
        await self.call("DELETE", f"{self.path}/restarts")
        self.intervals.append((revision, granted, released))


async def main() -> None:
    urls, token, app = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    first, n, min_ready = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    consumers = [
        Consumer(urls[(first + i) % len(urls)], token, app, f"bench-{first + i}", min_ready)
        for i in range(n)
    ]
    ready, count = asyncio.Event(), [0]
    tasks = [asyncio.create_task(c.run(ready, count, n)) for c in consumers]
    await ready.wait()
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        json.dumps(
            {
                "intervals": [iv for c in consumers for iv in c.intervals],
                "requests": sum(c.requests for c in consumers),
                "errors": sum(c.errors for c in consumers),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
