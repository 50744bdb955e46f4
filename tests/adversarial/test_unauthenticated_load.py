"""Unauthenticated load (issue 13, item 5): a flood of bad tokens, half-sent requests and idle
connections from one address must not cost the store a row per request, a database read per
request, or a file descriptor per connection without bound.

- refused requests (401) are limited per client address: past its burst, the address gets 429
  before its credential is looked at;
- refusals are audited as one record per client and kind per interval, with a count;
- a connection must send its request's headers within ``--header-timeout`` (408, closed);
- one address holds at most ``--max-connections-per-client`` connections (429, closed).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path

import pytest

from tests.procs import Proc, create_token, init_store, loader_env, start_store, wait_until
from tests.store_harness import Store

BAD = "lt_0123456789ab_" + "x" * 43
GUARD = 15.0  # socket timeout: a store that never answers fails the test instead of hanging


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def _status(store: Store, path: str, token: str) -> int:
    resp = await store.client.get(path, headers=store.auth(token))
    await resp.read()
    return resp.status


async def test_refused_requests_are_limited_per_address_then_429(
    make_store: Callable[..., AbstractAsyncContextManager[Store]],
) -> None:
    """1. 5 refusals in a burst, then 429 (with Retry-After, after a pause) for every request
    needing a credential from that address -- a good token too -- while /v1/health still
    answers; 2. a second later one more refusal is allowed; 3. once refilled, all is as
    before."""
    async with make_store(refusal_rate_limit=0.001, refusal_burst=5) as store:
        app = await store.app("flooded")
        path = f"/v1/apps/{app}/secrets"
        assert [await _status(store, path, BAD) for _ in range(5)] == [401] * 5
        flood = await asyncio.gather(*(_status(store, path, BAD) for _ in range(40)))
        assert flood == [429] * 40
        limited = await store.client.get(path, headers=store.auth(BAD))
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await limited.json())["code"] == "rate_limited"
        assert await _status(store, path, store.admin) == 429
        assert (await store.client.get("/v1/health")).status == 200
        token_route = await store.client.post(
            "/oauth/token",
            json={"grant_type": "client_credentials", "client_id": "lc_x", "client_secret": "y"},
        )
        assert token_route.status == 429  # guessing client secrets is limited the same way
        # the budget refills at its rate (a clock of the test's own from here)
        from loader.server.limits import RefusalLimiter

        clock = Clock()
        store.state.refusals = RefusalLimiter(1.0, 5, clock=clock)
        assert [await _status(store, path, BAD) for _ in range(6)] == [401] * 5 + [429]
        clock.now += 1.0
        assert [await _status(store, path, BAD) for _ in range(2)] == [401, 429]
        clock.now += 60
        assert await _status(store, path, store.admin) == 200


async def test_good_requests_are_not_limited_however_many_at_once(
    make_store: Callable[..., AbstractAsyncContextManager[Store]],
) -> None:
    """The budget is for refusals only: 200 concurrent requests with a good token from one
    address (agents starting together behind one address) all pass, with a budget of 5."""
    async with make_store(refusal_rate_limit=0.001, refusal_burst=5) as store:
        app = await store.app("busy")
        path = f"/v1/apps/{app}/secrets"
        statuses = await asyncio.gather(*(_status(store, path, store.admin) for _ in range(200)))
        assert statuses == [200] * 200


async def test_refusals_are_audited_as_counts_not_rows(
    make_store: Callable[..., AbstractAsyncContextManager[Store]], tmp_path: Path
) -> None:
    """300 bad-token requests on three apps, and 20 refusals of a real token's scope: a handful
    of records, whose counts add up, in the database, the audit route and the audit file."""
    sink = tmp_path / "audit.jsonl"
    async with make_store(refusal_rate_limit=1000, refusal_burst=1000, audit_file=sink) as store:
        apps = [await store.app(f"a{i}") for i in range(3)]
        for n in range(300):
            assert await _status(store, f"/v1/apps/{apps[n % 3]}/secrets", BAD) == 401
        reader = await store.token("secrets:read", app=apps[0])
        for _ in range(20):
            resp = await store.client.post(
                f"/v1/apps/{apps[0]}/secrets",
                json={"name": "A", "value": "v"},
                headers=store.auth(reader),
            )
            assert resp.status == 403
        await store.state.audit.flush()
        outcomes = await store.sql("SELECT outcome FROM audit_events")
        assert len([o for (o,) in outcomes if o != "ok"]) <= 4  # not a row per refusal
        rows = await store.sql("SELECT outcome, app_id, token_id, client, count FROM audit_events")
        refused = [r for r in rows if r[0] != "ok"]
        assert sum(r[4] for r in refused if r[0] == "unauthorized") == 300
        assert {(r[1], r[4]) for r in refused if r[0] == "unauthorized"} == {(a, 100) for a in apps}
        forbidden = [r for r in refused if r[0] == "forbidden"]
        assert [(r[2], r[4]) for r in forbidden] == [(reader[:15], 20)]
        assert all(r[3] == "127.0.0.1" for r in refused)
        assert len(sink.read_text().splitlines()) == len(rows)
        resp = await store.client.get(f"/v1/apps/{apps[1]}/audit", headers=store.auth(store.admin))
        events = [e for e in (await resp.json())["events"] if e["outcome"] != "ok"]
        assert [(e["action"], e["outcome"], e["count"], e["client"]) for e in events] == [
            ("list_secrets", "unauthorized", 100, "127.0.0.1")
        ]


# -- the connection layer of a real store process ---------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "store"
    init_store(data)
    return data


@contextmanager
def serving(data: Path, *args: str, **settings: str) -> Iterator[tuple[Proc, int]]:
    store = start_store(data, *args, env=loader_env(**settings))
    try:
        yield store, int(store.url.rsplit(":", 1)[1])
    finally:
        store.stop()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GUARD, source_address=(source, 0))


def answer(sock: socket.socket) -> bytes:
    """Everything the store sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def get(port: int, path: str, token: str | None = None, source: str = "127.0.0.1") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with connect(port, source) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
        return answer(s)


def health(port: int, source: str = "127.0.0.1") -> bytes:
    return get(port, "/v1/health", source=source)


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_half_sent_and_silent_connections_are_closed_at_the_header_timeout(data: Path) -> None:
    with serving(data, LOADER_HEADER_TIMEOUT="1s") as (_, port):
        silent = connect(port)
        half = connect(port)
        half.sendall(b"GET /v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer lt_")
        trickle = connect(port)
        trickle.sendall(b"GET /v1/health HTTP/1.1\r\n")
        for _ in range(3):  # a byte now and then is not a request
            time.sleep(0.4)
            trickle.sendall(b"X")
        for s in (silent, half, trickle):
            got = answer(s)
            assert got.startswith(b"HTTP/1.1 408 "), got[:80]
            s.close()
        # a kept-alive connection: the next request's headers get the same deadline
        with connect(port) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            assert answer(s).startswith(b"HTTP/1.1 408 ")
        assert health(port).startswith(b"HTTP/1.1 200 ")


def test_connections_per_client_address_are_capped(data: Path) -> None:
    """1. 20 connections from one address are held (the cap), 300 more are answered 429 and
    closed at once -- the store's open descriptors grow by about the cap, not by 320;
    2. another address is served meanwhile; 3. closing some lets the first address in again."""
    with serving(data, "--max-connections-per-client", "20", "--header-timeout", "60") as (
        store,
        port,
    ):
        base = open_fds(store.pid)
        held = [connect(port) for _ in range(20)]
        for s in held:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Half: ")
        wait_until(lambda: open_fds(store.pid) >= base + 20, what="20 held connections")
        for _ in range(5):  # a client that reads first sees why
            with connect(port) as s:
                got = answer(s)
                assert got.startswith(b"HTTP/1.1 429 "), got[:80]
                assert b'"code":"rate_limited"' in got
        refused = []
        for _ in range(300):
            s = connect(port)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Half: ")
            refused.append(s)
        for s in refused:
            try:  # 429 and closed; with its request unread the close may come as a reset
                got = answer(s)
            except ConnectionResetError:
                got = b""
            assert got == b"" or got.startswith(b"HTTP/1.1 429 "), got[:80]
            s.close()
        assert open_fds(store.pid) <= base + 20 + 10
        assert health(port, source="127.0.0.2").startswith(b"HTTP/1.1 200 ")
        for s in held[:5]:
            s.close()
        wait_until(
            lambda: health(port).startswith(b"HTTP/1.1 200 "), what="a slot freed by a close"
        )
        for s in held[5:]:
            s.close()


def test_a_flooding_address_does_not_lock_out_another(data: Path) -> None:
    """Bad tokens from 127.0.0.1 until 429; the admin on 127.0.0.2 is served throughout."""
    token = create_token(data, "*")
    with serving(data, LOADER_REFUSAL_RATE_LIMIT="0.1/s", LOADER_REFUSAL_BURST="10") as (_, port):
        codes = [status(get(port, "/v1/apps", BAD)) for _ in range(10)]
        assert codes == [401] * 10
        with ThreadPoolExecutor(30) as pool:  # each 429 comes after a pause: ask at once
            codes = list(pool.map(lambda _: status(get(port, "/v1/apps", BAD)), range(30)))
        assert set(codes) == {429}, codes
        assert status(get(port, "/v1/apps", token, source="127.0.0.2")) == 200
        assert status(get(port, "/v1/apps", token)) == 429  # the flooding address, good token
