"""Refusals, counted: one audit record per client and kind of refusal per interval.

A flood of bad tokens must not write a row per request (15,000 rows in 15 s, and the writes of
everyone else queued behind them). Refusals that agree on client address, action, outcome,
token, app, environment and names share one record whose ``count`` says how many there were
and whose ``at`` is the first. The number of distinct records held is bounded: past it, the
rest of the interval's refusals of an outcome share one record with no client or target.
"""

from __future__ import annotations

from dataclasses import replace

from loader.store.models import AuditEvent, audit_key

Key = tuple[object, ...]


class RefusalTally:
    def __init__(self, max_records: int = 4096) -> None:
        self.max_records = max_records
        self._records: dict[Key, tuple[AuditEvent, int]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def add(self, event: AuditEvent) -> None:
        key: Key = audit_key(event)
        found = self._records.get(key)
        if found is None and len(self._records) >= self.max_records:
            event = AuditEvent(at=event.at, action="refused", outcome=event.outcome)
            key = audit_key(event)
            found = self._records.get(key)
        if found is None:
            self._records[key] = (event, 1)
        else:
            self._records[key] = (found[0], found[1] + 1)

    def drain(self) -> list[AuditEvent]:
        """The records counted so far (and a fresh start)."""
        records, self._records = self._records, {}
        return [replace(first, count=count) for first, count in records.values()]
