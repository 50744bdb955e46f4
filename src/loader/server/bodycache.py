"""Encoded answers of the runtime read, kept per revision: every watcher woken by one change gets
the same bytes and headers, built once (thousands may wake together).

Keyed by environment id, revision and variant (mode, format, names): a revision fixes every
value of an environment, and ids are never reused (AUTOINCREMENT, identity columns), so a key
names one body for good. Bounded: the least recently used go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

Body = tuple[bytes, dict[str, str]]


class BodyCache:
    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._bodies: OrderedDict[tuple[int, int, int], Body] = OrderedDict()

    def get(self, env_id: int, revision: int, variant: int, build: Callable[[], Body]) -> Body:
        key = (env_id, revision, variant)
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
            return body
        body = self._bodies[key] = build()
        while len(self._bodies) > self.size:
            self._bodies.popitem(last=False)
        return body
