"""Versioned schema migrations, one SQL file per version and backend (``NNNN_name.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from loader.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str) -> list[Migration]:
    folder = resources.files(__package__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def latest(backend: str) -> int:
    return max(m.version for m in migrations(backend))


def check_version(backend: str, current: int, *, migrate: bool) -> int:
    """Refuse a schema newer than this loader knows, or an older one unless ``migrate``;
    returns the latest version."""
    newest = latest(backend)
    if current > newest:
        raise ConfigError(
            f"the database schema is version {current}, newer than this loader knows ({newest}); "
            "upgrade loader"
        )
    if current < newest and not migrate:
        raise ConfigError(
            f"the database schema is version {current}, this loader needs {newest}: "
            "run `loader store migrate` (or `store serve --migrate`)"
        )
    return newest
