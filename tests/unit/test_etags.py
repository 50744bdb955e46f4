"""ETag headers as the store reads them (loader.server.etags)."""

from __future__ import annotations

import pytest

from loader.server.etags import if_match, parse_etags


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ('"a"', ('"a"',)),
        ('"a", "b"', ('"a"', '"b"')),
        ('W/"a",W/"b" ,"c"', ('"a"', '"b"', '"c"')),
        ("*", ("*",)),
        ('"r1.2.0000abcd"', ('"r1.2.0000abcd"',)),
        (",", ()),
        ("", ()),
    ],
)
def test_parse_etags(header: str, tags: tuple[str, ...]) -> None:
    assert parse_etags(header) == tags


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        (None, None),
        ("", None),
        ("   ", None),  # blank counts as absent
        (",", ()),  # names nothing: matches nothing (412), unlike no header
        ('"s1.7"', ('"s1.7"',)),
        (' W/"s1.7" ', ('"s1.7"',)),
    ],
)
def test_if_match(header: str | None, tags: tuple[str, ...] | None) -> None:
    assert if_match(header) == tags
