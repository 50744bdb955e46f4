"""The fan-out client: holds N long-poll watchers on one server, makes one write, and times
how long until every watcher has its answer. Prints one JSON line.

    python -m bench.fanout_client loader URL TOKEN APP N
    python -m bench.fanout_client minimal URL - - N
    python -m bench.fanout_client loader URL TOKEN APP N --watch-only

``--watch-only`` (several clients on several servers, one write made by the orchestrator):
no write, no "go"; once every watcher has its answer, prints the arrival times as
``time.perf_counter()`` readings (CLOCK_MONOTONIC: comparable between processes). Its
watchers arrive at :data:`ARRIVALS_PER_S` (a store replica reads the environment from
PostgreSQL for each arriving request: an instant burst of 10,000 queues on its pool).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

ARRIVALS_PER_S = 1000
PACE = 200


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def request(
    host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    status = await read_response(reader)
    writer.close()
    return status


async def main() -> None:
    kind, url, token, app, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    watch_only = sys.argv[6:] == ["--watch-only"]
    host, port = url.removeprefix("http://").split(":")
    port_n = int(port)
    auth = {"Authorization": f"Bearer {token}"} if kind == "loader" else {}
    if kind == "loader":
        rendered = f"/v1/apps/{app}/environments/default/rendered?mode=full"
        reader, writer = await asyncio.open_connection(host, port_n)
        writer.write(
            (
                f"GET {rendered} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = (await reader.read()).split(b"\r\n\r\n")[0].decode()
        etag = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("etag:")
        )
        watch_path = rendered + "&wait=60"
        watch_headers = {**auth, "If-None-Match": etag}
    else:  # the very same request, which the minimal server ignores
        watch_path = "/v1/apps/1/environments/default/rendered?mode=full&wait=60"
        watch_headers = {
            "Authorization": "Bearer lt_0123456789ab_" + "x" * 43,
            "If-None-Match": '"r1.1.0a1b2c3d"',
        }

    gate = asyncio.Semaphore(256)
    connections = []

    async def connect() -> None:
        async with gate:
            connections.append(await asyncio.open_connection(host, port_n))

    if not watch_only:  # (paced watchers connect as they arrive: the store closes a
        # connection that sends no request within its header timeout)
        await asyncio.gather(*(connect() for _ in range(n)))
    arrivals: list[float] = []

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = [
            f"GET {watch_path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in watch_headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status = await read_response(reader)
        arrivals.append(time.perf_counter())
        assert status == 200, status
        writer.close()

    if watch_only:  # watchers arrive over a few seconds (a burst is measured on its own)
        tasks = []
        for first in range(0, n, PACE):
            connections = []
            await asyncio.gather(*(connect() for _ in range(min(PACE, n - first))))
            tasks += [asyncio.create_task(watch(r, w)) for r, w in connections]
            await asyncio.sleep(PACE / ARRIVALS_PER_S)
        await asyncio.sleep(2.0)
    else:
        tasks = [asyncio.create_task(watch(r, w)) for r, w in connections]
        await asyncio.sleep(max(2.0, n / 2000))  # every request parked on the server
    print(json.dumps({"ready": True}), flush=True)  # the orchestrator samples memory now
    if watch_only:
        await asyncio.gather(*tasks)
        arrivals.sort()
        at = {"first": arrivals[0], "p50": arrivals[len(arrivals) // 2], "last": arrivals[-1]}
        print(json.dumps({"n": n, **at}), flush=True)
        return
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.perf_counter()
    if kind == "loader":
        body = json.dumps({"name": "FANOUT", "value": str(start)}).encode()
        status = await request(
            host,
            port_n,
            "POST",
            f"/v1/apps/{app}/secrets",
            {**auth, "Content-Type": "application/json"},
            body,
        )
    else:
        status = await request(host, port_n, "POST", "/change", {})
    assert status == 200, status
    await asyncio.gather(*tasks)
    arrivals.sort()
    print(
        json.dumps(
            {
                "n": n,
                "all_ms": (arrivals[-1] - start) * 1000,
                "first_ms": (arrivals[0] - start) * 1000,
                "p50_ms": (arrivals[len(arrivals) // 2] - start) * 1000,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
