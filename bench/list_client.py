"""N clients listing an app's secrets over and over (`GET /v1/apps/APP/secrets`), each on its
own connection, for S seconds. Prints one JSON line: lists completed, their times in ms, bytes.

    python -m bench.list_client URL TOKEN APP CLIENTS SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main() -> None:
    url, token, app, clients, seconds = sys.argv[1:6]
    deadline = time.monotonic() + float(seconds)
    times: list[float] = []
    sizes: list[int] = []

    async def lister() -> None:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(60)
        ) as session:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                async with session.get(f"{url}/v1/apps/{app}/secrets") as resp:
                    body = await resp.read()
                    assert resp.status == 200, resp.status
                times.append((time.perf_counter() - start) * 1000)
                sizes.append(len(body))

    await asyncio.gather(*(lister() for _ in range(int(clients))))
    print(json.dumps({"times": times, "bytes": max(sizes, default=0)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
