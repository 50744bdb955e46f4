"""``Idempotency-Key`` on writes: a retry of a write whose answer was lost gets the first answer.

A client that sends the same key with the same request (method, path, query, body) and the same
token within ``ttl`` is answered with the first result -- status, headers and body -- marked
``Idempotent-Replayed: true``, and nothing is written again. A retry arriving while the first is
still running waits for it. The same key with a different request is refused (422,
``idempotency_key_reused``). 5xx answers are not kept: the write did not happen, so a retry runs
again.

Kept in the store process's memory (bounded: ``max_entries``, oldest first out). The first
request runs to its end even if its client goes away, so its result is there for the retry. With
several PostgreSQL replicas, a retry that reaches another replica runs again (see
docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from loader.errors import InvalidRequestError, UnrenderableError

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
_DROPPED_HEADERS = frozenset({"content-length", "date", "server", "transfer-encoding"})


class IdempotencyKeyReusedError(UnrenderableError):
    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def response(self) -> web.Response:
        response = web.Response(status=self.status, body=self.body)
        for name, value in self.headers:
            response.headers[name] = value
        response.headers[REPLAYED] = "true"
        return response


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    answer: asyncio.Future[Answer]
    expires: float


class Idempotency:
    def __init__(self, ttl: float = 86_400.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.replays = 0

    @staticmethod
    def check_key(key: str) -> str:
        if not _KEY.fullmatch(key):
            raise InvalidRequestError(
                f"{HEADER} must be 1 to 255 visible ASCII characters (e.g. a UUID)"
            )
        return key

    async def run(
        self,
        scope: str,
        key: str,
        fingerprint: bytes,
        produce: Callable[[], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Answer with ``produce()`` once per (``scope``, ``key``); replay it afterwards."""
        self._expire()
        slot = (scope, self.check_key(key))
        entry = self._entries.get(slot)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise IdempotencyKeyReusedError(
                    f"this {HEADER} was used for a different request; use a new key"
                )
            first = await asyncio.shield(entry.answer)
            self.replays += 1
            return first.response()
        loop = asyncio.get_running_loop()
        entry = _Entry(fingerprint, loop.create_future(), time.monotonic() + self.ttl)
        self._entries[slot] = entry
        try:
            response = await produce()
        except BaseException as exc:
            self._forget(slot, entry)
            entry.answer.set_exception(exc)
            entry.answer.exception()  # retrieved: whoever waits re-raises it
            raise
        answer = capture(response)
        if answer is None or answer.status >= 500:
            self._forget(slot, entry)  # not done (or not keepable): a retry runs again
        entry.answer.set_result(answer or Answer(response.status, (), None))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return response

    def _forget(self, slot: tuple[str, str], entry: _Entry) -> None:
        if self._entries.get(slot) is entry:
            del self._entries[slot]

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries:
            slot, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                return
            del self._entries[slot]


def fingerprint(method: str, path_qs: str, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (method.encode(), path_qs.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def capture(response: web.StreamResponse) -> Answer | None:
    if not isinstance(response, web.Response):
        return None
    body = response.body
    if body is not None and not isinstance(body, bytes):
        return None
    headers = tuple(
        (name, value)
        for name, value in response.headers.items()
        if name.lower() not in _DROPPED_HEADERS
    )
    return Answer(response.status, headers, body)
