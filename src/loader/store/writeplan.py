"""What a write or delete of one secret does, decided before any SQL (pure): both repositories
execute the same plan. The compare-and-set check on ``If-Match`` lives here too; the header's
syntax is the server's (:mod:`loader.server.etags`)."""

from __future__ import annotations

from dataclasses import dataclass

from loader.errors import NotFoundError, PreconditionFailedError
from loader.store.models import UNSET, IfMatch, SecretChange, SecretMeta


def check_if_match(if_match: IfMatch | None, current: SecretMeta | None) -> None:
    """Compare-and-set: ``if_match`` must name the current ETag (or ``*`` for "exists")."""
    if if_match is None:
        return
    if current is not None and ("*" in if_match or current.etag in if_match):
        return
    raise PreconditionFailedError(
        "precondition failed: the secret changed since you read it (If-Match does not match "
        "its current ETag)"
        if current is not None
        else "precondition failed: If-Match given but the secret does not exist"
    )


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What a write does, decided before any SQL (both repositories execute the same plan)."""

    noop: bool  # nothing changes: no version, no revision, no watcher woken
    description: str | None
    seals: bool  # the write makes a new version
    version: int  # the value's version after the write


def plan_write(
    name: str, current: SecretMeta | None, change: SecretChange, same_value: bool = False
) -> WritePlan:
    """``same_value``: the value being written is the current one (``change.matches`` said so)."""
    check_if_match(change.if_match, current)
    if current is None and change.must_exist:
        raise NotFoundError(f"secret {name!r} not found")
    description = (
        (current.description if current else None)
        if change.description is UNSET
        else change.description
    )
    version = current.version if current else 0
    seals = change.seal is not None and not (same_value and current is not None)
    noop = current is not None and not seals and description == current.description
    return WritePlan(noop, description, seals, version + 1 if seals else version)


def compares_value(current: SecretMeta | None, change: SecretChange) -> bool:
    """Whether a write must look at the current value first (to skip writing it again)."""
    return (
        change.seal is not None
        and change.matches is not None
        and current is not None
        and current.has_value
    )


def plan_delete(name: str, current: SecretMeta | None, if_match: IfMatch | None) -> SecretMeta:
    check_if_match(if_match, current)
    if current is None:
        raise NotFoundError(f"secret {name!r} not found")
    return current
