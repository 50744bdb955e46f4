"""Small pure rules both repositories share: If-Match checks and scope encoding."""

from __future__ import annotations

from loader.errors import PreconditionFailedError
from loader.store.models import SecretMeta


def parse_etags(header: str) -> list[str]:
    """``"a", W/"b"`` -> ``['"a"', '"b"']`` (weak prefixes dropped; ``*`` kept)."""
    out = []
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            out.append(tag)
    return out


def check_if_match(if_match: str | None, current: SecretMeta | None) -> None:
    """Compare-and-set: ``If-Match`` must name the current ETag (or ``*`` for "exists")."""
    if if_match is None:
        return
    tags = parse_etags(if_match)
    if current is not None and ("*" in tags or current.etag in tags):
        return
    raise PreconditionFailedError(
        "precondition failed: the secret changed since you read it (If-Match does not match "
        "its current ETag)"
        if current is not None
        else "precondition failed: If-Match given but the secret does not exist"
    )


def encode_scopes(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def decode_scopes(text: str) -> frozenset[str]:
    return frozenset(text.split())
