"""What the agent holds: one environment's values at one store revision."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    etag: str
    values: dict[str, str] = field(repr=False)
    unset: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return sorted(self.values)
