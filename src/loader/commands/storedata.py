"""``loader store backup|restore|copy``: the store's data, kept and moved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loader.errors import ConfigError
from loader.output import print_json, say

if TYPE_CHECKING:
    from loader.server.settings import StoreSettings

PG_BACKUP = "for PostgreSQL use pg_dump --format=custom (and pg_restore), see docs/operations.md"


def register(
    ssub: Any, location: Callable[[Any], None], settings: Callable[..., StoreSettings]
) -> None:
    """The subcommands, with ``location``'s flags (where the data is) and ``settings``, what
    reads them (given by :mod:`loader.commands.store`, which owns both)."""
    p = ssub.add_parser(
        "backup",
        help="Write a consistent copy of the SQLite database (safe while the store serves)",
        description="Uses SQLite's online backup API: database and write-ahead log together, "
        "one self-contained file, mode 0600. The master key is not in it: keep that separately. "
        + PG_BACKUP
        + ".",
    )
    location(p)
    p.add_argument("--output", required=True, help="The backup file to create (must not exist)")
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=backup, settings=settings)

    p = ssub.add_parser(
        "restore",
        help="Put a backup in place as the store's database (the store must be stopped)",
        description="Checks the backup and that the master key opens its data keys; an existing "
        "database is only replaced with --force, and is then renamed aside, not deleted.",
    )
    p.add_argument("backup_file", metavar="FILE", help="A file written by `loader store backup`")
    location(p)
    p.add_argument(
        "--force", action="store_true", help="Set an existing database aside and restore"
    )
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=restore, settings=settings)

    p = ssub.add_parser(
        "copy",
        help="Copy every row between SQLite and PostgreSQL (either way), e.g. to grow out of "
        "SQLite",
        description="Secrets, versions, audit, tokens, clients, ids and revisions, in one "
        "transaction; checks counts, unwraps every data key and decrypts a sample before it "
        "commits. The target must be empty; the source store must be stopped.",
    )
    p.add_argument("--from", dest="source", required=True, help="sqlite:///PATH or postgresql://")
    p.add_argument("--to", dest="target", required=True, help="sqlite:///PATH or postgresql://")
    from loader.envsettings import add_flags
    from loader.server.settings import StoreSettings

    add_flags(p, StoreSettings, ("master_key_file", "data_dir"))  # the source store's key
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=copy, settings=settings)


def _sqlite_db(ns: Any, doing: str) -> Path:
    from loader.store.sqlitefile import sqlite_path

    url = ns.settings(ns).db_url
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"{doing} works on a SQLite store; {PG_BACKUP}")
    return sqlite_path(url)


def _counts_line(counts: dict[str, int]) -> str:
    return (
        f"{counts['secrets']} secrets ({counts['secret_versions']} versions) in "
        f"{counts['environments']} environments of {counts['apps']} apps, "
        f"{counts['tokens']} tokens and clients, {counts['audit_events']} audit events"
    )


def backup(ns: Any) -> int:
    from loader.store.backup import backup as run

    report = run(_sqlite_db(ns, "backup"), Path(ns.output))
    if ns.json:
        print_json(
            {
                "output": str(report.path),
                "schema_version": report.schema_version,
                "bytes": report.size,
                "counts": report.counts,
            }
        )
        return 0
    say(f"backed up {_counts_line(report.counts)} to {report.path} ({report.size} bytes)")
    say("the master key is not in the backup: keep a copy of it separately, offline")
    return 0


def restore(ns: Any) -> int:
    from loader.store.backup import restore as run
    from loader.store.keyfile import read_key_file

    settings = ns.settings(ns)
    db = _sqlite_db(ns, "restore")
    keyring = read_key_file(settings.key_file)
    report = run(Path(ns.backup_file), db, keyring, force=ns.force)
    if ns.json:
        print_json(
            {"database": str(report.path), "schema_version": report.schema_version, **report.counts}
        )
        return 0
    say(f"restored {_counts_line(report.counts)} into {report.path}")
    return 0


def copy(ns: Any) -> int:
    from loader.store.keyfile import read_key_file
    from loader.store.transfer import copy as run
    from loader.store.transfer import describe

    # The source store: its database is --from, its master key --master-key-file or DIR's.
    keyring = read_key_file(ns.settings(ns, database_url=ns.source).key_file)
    report = asyncio.run(run(ns.source, ns.target, keyring))
    if ns.json:
        print_json(
            {
                "counts": report.counts,
                "data_keys_checked": report.data_keys_checked,
                "values_decrypted": report.values_decrypted,
            }
        )
        return 0
    say(f"copied {_counts_line(report.counts)} from {describe(ns.source)} to {describe(ns.target)}")
    say(
        f"checked: every count matches, {report.data_keys_checked} data keys unwrap, "
        f"{report.values_decrypted} sampled values decrypt"
    )
    return 0
