"""Minimal aiohttp servers: the baselines the loader servers are measured against.

python -m bench.minimal longpoll PORT [FILE]  any GET is held until POST /change (fan-out)
python -m bench.minimal static PORT FILE  GET / answers FILE's bytes (local endpoint)
python -m bench.minimal unix PATH FILE    the same on a unix socket
python -m bench.minimal accept PORT       POST / reads the body and answers 200 (writes)
python -m bench.minimal durable PORT DB   POST / upserts the JSON body's name/value into SQLite
                                          (WAL, synchronous=FULL, one writer thread) first
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web


def longpoll(body: bytes = b'{"changed":true}') -> web.Application:
    """Holds every GET until POST /change; then answers each with ``body`` and the same
    headers the store sends (so both servers write the same bytes)."""
    app = web.Application()
    state = {"event": asyncio.Event()}
    headers = {
        "Cache-Control": "no-store",
        "ETag": '"r1.2.0a1b2c3d"',
        "X-Loader-Revision": "2",
        "Content-Type": "application/json",
        "X-Content-Type-Options": "nosniff",
    }

    async def watch(request: web.Request) -> web.Response:
        await state["event"].wait()
        return web.Response(body=body, headers=headers)

    async def change(request: web.Request) -> web.Response:
        event, state["event"] = state["event"], asyncio.Event()
        event.set()
        return web.json_response({"ok": True})

    app.router.add_get("/{path:.*}", watch)
    app.router.add_post("/change", change)
    return app


def static(body: bytes) -> web.Application:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/", handler)
    app.router.add_get("/v1/secrets", handler)
    return app


def accept() -> web.Application:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app.router.add_post("/", handler)
    return app


def durable(db: str) -> web.Application:
    """The least a durable write can cost: one fsynced SQLite upsert on one writer thread."""
    import json
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    writer = ThreadPoolExecutor(1)
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def upsert(name: str, value: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO kv (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        conn.execute("COMMIT")

    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(writer, upsert, body["name"], body["value"])
        return web.json_response({"ok": True})

    app.router.add_post("/", handler)
    return app


async def serve(app: web.Application, port: int | None = None, path: str | None = None) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if path is not None:
        site: web.BaseSite = web.UnixSite(runner, path)
    else:
        site = web.TCPSite(runner, "127.0.0.1", port or 0, backlog=1024)
    await site.start()
    where = f"unix:{path}"
    if path is None:
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        where = f"http://127.0.0.1:{sock.getsockname()[1]}"
    print("listening on", where, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    kind = sys.argv[1]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if kind == "longpoll":
        body = Path(sys.argv[3]).read_bytes() if len(sys.argv) > 3 else b'{"changed":true}'
        asyncio.run(serve(longpoll(body), int(sys.argv[2])))
    elif kind == "static":
        asyncio.run(serve(static(Path(sys.argv[3]).read_bytes()), int(sys.argv[2])))
    elif kind == "unix":
        asyncio.run(serve(static(Path(sys.argv[3]).read_bytes()), path=sys.argv[2]))
    elif kind == "accept":
        asyncio.run(serve(accept(), int(sys.argv[2])))
    elif kind == "durable":
        asyncio.run(serve(durable(sys.argv[3]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
