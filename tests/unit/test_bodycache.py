"""The server's cache of encoded runtime-read answers (loader.server.bodycache)."""

from __future__ import annotations

from collections.abc import Callable

from loader.server.bodycache import Body, BodyCache


def test_a_body_is_built_once_per_env_revision_and_variant_and_the_oldest_go_first() -> None:
    built: list[tuple[int, int, int]] = []

    def builder(*key: int) -> Callable[[], Body]:
        def build() -> Body:
            built.append(key)
            return f"{key}".encode(), {"ETag": str(key)}

        return build

    cache = BodyCache(size=2)
    first = cache.get(1, 5, 7, builder(1, 5, 7))
    assert cache.get(1, 5, 7, builder(1, 5, 7)) is first  # the same bytes for every watcher
    cache.get(1, 6, 7, builder(1, 6, 7))  # a new revision
    cache.get(1, 5, 7, builder(1, 5, 7))  # used again: now the most recent
    cache.get(2, 5, 7, builder(2, 5, 7))  # evicts (1, 6, 7), the least recently used
    cache.get(1, 5, 7, builder(1, 5, 7))
    cache.get(1, 6, 7, builder(1, 6, 7))
    assert built == [(1, 5, 7), (1, 6, 7), (2, 5, 7), (1, 6, 7)]
