"""Write planning (loader.store.writeplan) as tables: what a write or delete of one secret does
before any SQL runs, the same for both repositories."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loader.crypto import Sealed
from loader.errors import LoaderError, NotFoundError, PreconditionFailedError
from loader.store.models import UNSET, DataKeyRecord, SecretChange, SecretMeta
from loader.store.writeplan import (
    WritePlan,
    check_if_match,
    compares_value,
    plan_delete,
    plan_write,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


def meta(version: int = 3, description: str | None = "d", revision: int = 7) -> SecretMeta:
    return SecretMeta(1, 2, "A", description, version, revision, T, T)


def seal(version: int, key: DataKeyRecord) -> Sealed:
    return Sealed(b"n" * 12, b"c")


def same(version: int, key: DataKeyRecord, sealed: Sealed) -> bool:
    return True


CURRENT = meta()
ETAG = '"s1.7"'  # CURRENT's
NEXT = WritePlan(False, "d", True, 4)  # CURRENT with a new value
DECLARED = meta(version=0)  # a name without a value yet


@pytest.mark.parametrize(
    ("current", "change", "same_value", "plan"),
    [
        # new secrets
        (None, SecretChange(seal=seal), False, WritePlan(False, None, True, 1)),
        (None, SecretChange(seal=seal, description="x"), False, WritePlan(False, "x", True, 1)),
        (None, SecretChange(), False, WritePlan(False, None, False, 0)),  # declared only
        # a new value: a new version, the description kept
        (CURRENT, SecretChange(seal=seal), False, WritePlan(False, "d", True, 4)),
        (DECLARED, SecretChange(seal=seal), False, WritePlan(False, "d", True, 1)),
        # the value it has already: nothing changes
        (CURRENT, SecretChange(seal=seal, matches=same), True, WritePlan(True, "d", False, 3)),
        # ... unless the description changes
        (
            CURRENT,
            SecretChange(seal=seal, description="new", matches=same),
            True,
            WritePlan(False, "new", False, 3),
        ),
        # descriptions: set, cleared, left, the same
        (CURRENT, SecretChange(description="e"), False, WritePlan(False, "e", False, 3)),
        (CURRENT, SecretChange(description=None), False, WritePlan(False, None, False, 3)),
        (CURRENT, SecretChange(description=UNSET), False, WritePlan(True, "d", False, 3)),
        (CURRENT, SecretChange(description="d"), False, WritePlan(True, "d", False, 3)),
        # If-Match naming the current ETag (among others), or any
        (CURRENT, SecretChange(seal=seal, if_match=(ETAG,)), False, NEXT),
        (CURRENT, SecretChange(seal=seal, if_match=('"x"', ETAG)), False, NEXT),
        (CURRENT, SecretChange(seal=seal, if_match=("*",)), False, NEXT),
        # must_exist on an existing secret
        (CURRENT, SecretChange(seal=seal, must_exist=True), False, NEXT),
    ],
)  # fmt: skip
def test_plan_write(
    current: SecretMeta | None, change: SecretChange, same_value: bool, plan: WritePlan
) -> None:
    assert plan_write("A", current, change, same_value) == plan


@pytest.mark.parametrize(
    ("current", "change", "error", "text"),
    [
        (CURRENT, SecretChange(seal=seal, if_match=('"s1.6"',)), PreconditionFailedError,
         "changed since you read it"),
        (CURRENT, SecretChange(seal=seal, if_match=()), PreconditionFailedError,
         "changed since you read it"),  # an If-Match that names nothing matches nothing
        (None, SecretChange(seal=seal, if_match=("*",)), PreconditionFailedError,
         "does not exist"),
        (None, SecretChange(seal=seal, must_exist=True), NotFoundError, "secret 'A' not found"),
        (None, SecretChange(description="x", must_exist=True), NotFoundError, "not found"),
    ],
)  # fmt: skip
def test_plan_write_refuses(
    current: SecretMeta | None, change: SecretChange, error: type[LoaderError], text: str
) -> None:
    with pytest.raises(error, match=text):
        plan_write("A", current, change)


@pytest.mark.parametrize(
    ("current", "change", "compares"),
    [
        (CURRENT, SecretChange(seal=seal, matches=same), True),
        (DECLARED, SecretChange(seal=seal, matches=same), False),  # no value to compare with
        (None, SecretChange(seal=seal, matches=same), False),
        (CURRENT, SecretChange(seal=seal), False),  # no matcher
        (CURRENT, SecretChange(description="x", matches=same), False),  # no new value
    ],
)
def test_compares_value(current: SecretMeta | None, change: SecretChange, compares: bool) -> None:
    assert compares_value(current, change) is compares


@pytest.mark.parametrize(
    ("current", "if_match", "outcome"),
    [
        (CURRENT, None, CURRENT),
        (CURRENT, (ETAG,), CURRENT),
        (CURRENT, ("*",), CURRENT),
        (CURRENT, ('"s1.8"',), PreconditionFailedError),
        (None, None, NotFoundError),
        (None, ("*",), PreconditionFailedError),
    ],
)
def test_plan_delete(
    current: SecretMeta | None, if_match: tuple[str, ...] | None, outcome: object
) -> None:
    if isinstance(outcome, SecretMeta):
        assert plan_delete("A", current, if_match) is outcome
        return
    assert isinstance(outcome, type)
    with pytest.raises(outcome):
        plan_delete("A", current, if_match)


def test_check_if_match_without_a_header_allows_anything() -> None:
    check_if_match(None, None)
    check_if_match(None, CURRENT)
