"""A flood of bad-token requests: C keep-alive connections from one source address, each
sending `GET PATH` with a made-up bearer token as fast as the store answers, for S seconds.
Prints one JSON line: requests answered by status, connections the store closed.

    python -m bench.flood_client URL PATH SECONDS CONNECTIONS SOURCE_ADDRESS [PERIOD START]

With PERIOD and START (a ``time.monotonic()`` instant, the same clock in every process), the
flood is on for PERIOD seconds from START, off for the next PERIOD, on again, and so on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from bench.fanout_client import read_response

BAD_TOKEN = "lt_0123456789ab_" + "x" * 43


async def main() -> None:
    url, path, seconds, conns, source = sys.argv[1:6]
    period = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    origin = float(sys.argv[7]) if len(sys.argv) > 7 else time.monotonic()
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {BAD_TOKEN}\r\n\r\n"
    ).encode()
    statuses: Counter[int] = Counter()
    closed = 0
    deadline = origin + float(seconds)

    async def while_off() -> None:
        """Sleep through an off window (when the flood alternates)."""
        if period:
            phase = (time.monotonic() - origin) % (2 * period)
            if phase >= period:
                await asyncio.sleep(2 * period - phase)

    async def one() -> None:
        nonlocal closed
        await asyncio.sleep(max(0.0, origin - time.monotonic()))
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(
                    host, int(port), local_addr=(source, 0)
                )
            except OSError:
                await asyncio.sleep(0.01)
                continue
            try:
                while time.monotonic() < deadline:
                    await while_off()
                    writer.write(request)
                    statuses[await read_response(reader)] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                closed += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(int(conns))))
    print(json.dumps({"statuses": dict(statuses), "closed": closed}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
