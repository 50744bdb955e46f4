"""Timestamps in the Spice API's shape: UTC, milliseconds (truncated), a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from loader.store.models import iso, parse_iso


def test_iso_is_utc_with_milliseconds_and_a_z() -> None:
    assert iso(datetime(2024, 1, 15, 10, 0, tzinfo=UTC)) == "2024-01-15T10:00:00.000Z"
    assert iso(datetime(2024, 1, 15, 10, 0, 0, 999_999, tzinfo=UTC)) == "2024-01-15T10:00:00.999Z"
    east = timezone(timedelta(hours=5, minutes=30))
    assert iso(datetime(2024, 1, 1, 2, 0, 0, 1_500, tzinfo=east)) == "2023-12-31T20:30:00.001Z"
    assert iso(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)) == "0999-12-31T23:59:59.000Z"


def test_parse_iso_reads_what_iso_writes() -> None:
    at = datetime(2026, 11, 30, 14, 3, 23, 123_000, tzinfo=UTC)
    assert parse_iso(iso(at)) == at
