"""Streaming secret masking (pure): every secret value longer than 3 characters, and its base64
and URL-encoded forms, becomes ``******`` in a byte stream, even when a value is split across
reads.

Output is emitted as soon as it cannot be the start of a secret: only the shortest tail that is
still a prefix of some pattern is held back, until more bytes (or the end) decide it. A line
ending in a newline is therefore passed on at once unless a secret itself starts with a newline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = b"******"
MIN_LENGTH = 4


def forms(value: str) -> set[bytes]:
    """The byte patterns that reveal ``value``: itself, base64 (standard and URL-safe, with and
    without padding) and URL-encoded (``%20`` and ``+`` styles)."""
    raw = value.encode()
    out = {raw}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        out.add(encoded)
        out.add(encoded.rstrip(b"="))
    out.add(quote(value, safe="").encode())
    out.add(quote_plus(value, safe="").encode())
    return {p for p in out if len(p) >= MIN_LENGTH}


class Masker:
    def __init__(self, values: Iterable[str]) -> None:
        patterns: set[bytes] = set()
        for value in values:
            if len(value) >= MIN_LENGTH:
                patterns |= forms(value)
        self.patterns = sorted(patterns, key=len, reverse=True)
        self.longest = len(self.patterns[0]) if self.patterns else 0
        self._regex = (
            re.compile(b"|".join(re.escape(p) for p in self.patterns)) if self.patterns else None
        )
        self._starts = {p[:1] for p in self.patterns}
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Masked bytes that are safe to emit now; the undecided tail is kept."""
        if self._regex is None:
            return data
        buf = self._pending + data
        out = bytearray()
        cursor = 0
        while (match := self._regex.search(buf, cursor)) is not None:
            if self._could_grow(buf, match.start()):
                break  # a longer secret may match here once more bytes arrive
            out += buf[cursor : match.start()] + MASK
            cursor = match.end()
        hold = self._undecided(buf, cursor)
        out += buf[cursor:hold]
        self._pending = buf[hold:]
        return bytes(out)

    def _could_grow(self, buf: bytes, start: int) -> bool:
        """Could a pattern longer than what is left of ``buf`` still match at ``start``?"""
        tail = buf[start:]
        return any(len(p) > len(tail) and p.startswith(tail) for p in self.patterns)

    def _undecided(self, buf: bytes, start: int) -> int:
        """The first index from which ``buf`` is a proper prefix of some pattern (else its end)."""
        for i in range(max(start, len(buf) - self.longest + 1), len(buf)):
            if buf[i : i + 1] in self._starts and self._could_grow(buf, i):
                return i
        return len(buf)

    def flush(self) -> bytes:
        """At the end of the stream: mask and release whatever is held."""
        if self._regex is None:
            data, self._pending = self._pending, b""
            return data
        data = self._regex.sub(MASK, self._pending)
        self._pending = b""
        return data
