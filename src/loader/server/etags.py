"""ETag headers as the store's HTTP side reads them (``If-Match``, ``If-None-Match``)."""

from __future__ import annotations


def parse_etags(header: str) -> tuple[str, ...]:
    """``"a", W/"b"`` -> ``('"a"', '"b"')`` (weak prefixes dropped; ``*`` kept)."""
    out = []
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            out.append(tag)
    return tuple(out)


def if_match(header: str | None) -> tuple[str, ...] | None:
    """The ETags an ``If-Match`` header names; None when it is absent or blank (one that names
    nothing usable, like ``,``, matches nothing)."""
    text = (header or "").strip()
    return parse_etags(text) if text else None
