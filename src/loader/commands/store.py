"""``loader store ...``: init, serve, migrate, and token management on the database directly."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loader.commands.invocation import duration, setup_logging
from loader.envsettings import add_flags, flags_given
from loader.errors import ConfigError, NotFoundError, shown
from loader.eventloop import run_async, signals_watched, tune_gc
from loader.hardening import harden_process
from loader.output import print_json, say
from loader.server.settings import LOCATION, StoreSettings
from loader.settingtypes import load

if TYPE_CHECKING:
    from loader.store.repository import Repository

log = logging.getLogger("loader.store")
T = TypeVar("T")


def build(name: str, store: Any) -> None:
    ssub = store.add_subparsers(dest="store_command", metavar="COMMAND", required=True)

    p = ssub.add_parser(
        "init",
        help="Create the data directory, database, master key and an admin token (printed once)",
    )
    _location(p)
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=init)

    p = ssub.add_parser("serve", help="Serve the HTTP API")
    add_flags(p, StoreSettings)
    p.set_defaults(handler=serve)

    p = ssub.add_parser(
        "migrate",
        help="Create the schema in an empty database, or apply pending migrations",
        description="Says what it did. Refuses to create a fresh schema where a store lived "
        "before (its database deleted or moved) unless --init-empty.",
    )
    _location(p)
    p.add_argument(
        "--init-empty",
        action="store_true",
        help="Create an empty store even though this directory held one (its data is gone)",
    )
    p.set_defaults(handler=migrate)

    from loader.commands import storedata

    storedata.register(ssub, _location, settings_from)

    token = ssub.add_parser("token", help="Create, list and revoke bearer tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    _credential(tsub, "create", "Create a token (printed once)", token_create, ttl=True)
    p = tsub.add_parser("list", help="List tokens and OAuth clients (ids only)")
    _location(p)
    p.add_argument("--json", action="store_true", help="Print JSON")
    p.set_defaults(handler=token_list)
    p = tsub.add_parser("revoke", help="Revoke a token or OAuth client by id")
    _location(p)
    p.add_argument("id", help="Token id (lt_...) or client id (lc_...)")
    p.set_defaults(handler=token_revoke)

    from loader.commands import trust

    trust.register(
        ssub, _location, _grant, settings=settings_from, on_database=on_database, binding=_binding
    )

    client = ssub.add_parser("client", help="OAuth clients (client credentials grant)")
    csub = client.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    _credential(csub, "create", "Create an OAuth client; its secret is printed once", client_create)

    p = ssub.add_parser(
        "rotate-key", help="Add a new master key and re-wrap every data key under it, online"
    )
    _location(p)
    p.add_argument(
        "--new-key-file",
        required=True,
        help="The new key (base64 of 32 bytes); created 0600 if it does not exist",
    )
    p.add_argument(
        "--reencrypt",
        action="store_true",
        help="Also give every environment a fresh data key and re-encrypt its values",
    )
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=rotate_key)

    p = ssub.add_parser("remove-key", help="Remove an old master key that wraps nothing any more")
    _location(p)
    p.add_argument("key_id", help="The key id, as rotate-key reported it (k...)")
    p.set_defaults(handler=remove_key)


def _location(p: Any) -> None:
    add_flags(p, StoreSettings, LOCATION)


def _credential(
    sub: Any, name: str, summary: str, handler: Callable[[Any], int], *, ttl: bool = False
) -> None:
    """A command that issues a credential (a token, an OAuth client) with a grant."""
    p = sub.add_parser(name, help=summary)
    _location(p)
    _grant(p)
    if ttl:
        p.add_argument("--ttl", help="Lifetime, e.g. 1h, 30d (default: no expiry)")
    p.add_argument("--description", help="A note shown in `token list`")
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=handler)


def _grant(p: Any) -> None:
    p.add_argument(
        "--scopes",
        required=True,
        help="Comma-separated: *, apps:read, apps:write, "
        "secrets:read, secrets:write, secrets:reveal",
    )
    p.add_argument("--app", help="Bind to this app (name or id)")
    p.add_argument("--env", help="Bind to these environments (comma-separated)")


def settings_from(ns: Any, **extra: Any) -> StoreSettings:
    """The store's settings from the environment and the flags of ``ns`` (``extra`` wins)."""
    return load(StoreSettings, **{**flags_given(ns, StoreSettings), **extra})


def private_location(settings: StoreSettings) -> StoreSettings:
    """For the commands that open the master key: refuse a data directory others can write
    (the key file's own mode is checked where it is read)."""
    if settings.data_dir is not None:
        from loader.store.permissions import check_data_dir

        check_data_dir(settings.data_dir)
    return settings


def on_database(
    settings: StoreSettings, work: Callable[[Repository], Awaitable[T]], **options: Any
) -> T:
    """Open the store's database (``options`` as :func:`~loader.store.backends.open_repository`
    takes them), run ``work`` on it and close it: the commands that act on it directly."""
    from loader.store.backends import opened_repository

    async def run() -> T:
        async with opened_repository(settings.db_url, **options) as repo:
            return await work(repo)

    return asyncio.run(run())


def _envs(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    from loader.names import check_environment_name

    return tuple(check_environment_name(e.strip()) for e in text.split(",") if e.strip())


async def _binding(repo: Any, app: str | None, env_text: str | None) -> tuple[int | None, Any]:
    """The app id (given by name or id) and environments a token is bound to, each checked to
    exist: a binding to nothing would be a token that can do nothing."""
    envs = _envs(env_text)
    app_id: int | None = None
    if app is not None:
        if app.isascii() and app.isdigit():
            found = await repo.get_app(int(app))
        else:
            found = next((a for a in await repo.list_apps() if a.name == app), None)
        if found is None:
            raise NotFoundError(f"app {shown(app)} not found")
        app_id = found.id
    if envs:
        apps = [app_id] if app_id is not None else [a.id for a in await repo.list_apps()]
        existing = {e.name for a in apps for e in await repo.list_environments(a)}
        missing = [e for e in envs if e not in existing]
        if missing:
            where = f"app {app_id}" if app_id is not None else "any app"
            raise NotFoundError(f"no environment {shown(', '.join(missing))} in {where}")
    return app_id, envs


async def _issue(
    repo: Repository, ns: Any, scopes: frozenset[str], **options: Any
) -> tuple[str, str]:
    """A token or OAuth client bound to ``--app``/``--env``: its id and what its holder keeps."""
    from loader.store.auth import issue_token

    app_id, envs = await _binding(repo, ns.app, ns.env)
    record, credential = await issue_token(
        repo, scopes, app_id=app_id, environments=envs, description=ns.description, **options
    )
    return record.id, credential


# -- init ----------------------------------------------------------------------------------


def init(ns: Any) -> int:
    settings = private_location(settings_from(ns, migrate=True))
    prepare_init(settings)
    result = on_database(settings, lambda repo: _init(settings, repo), migrate=True)
    where = (
        f"in {result['data_dir']}"
        if result["data_dir"]
        else f"(database from LOADER_DATABASE_URL, master key in {result['master_key_file']})"
    )
    if ns.json:
        print_json(result)
    elif "admin_token" in result:
        say(f"Initialised the store {where}.")
        say("Admin token (scope *), shown once; keep it somewhere safe:")
        say(f"  {result['admin_token']}")
    else:
        say(f"The store {where} is already initialised; nothing changed.")
    return 0


def prepare_init(settings: StoreSettings) -> None:
    """The data directory (0700) and the master key, before the database is created."""
    from loader.store.keyfile import create_key_file, read_key_file

    data_dir = settings.data_dir
    if data_dir is not None:
        if not data_dir.exists():
            data_dir.mkdir(mode=0o700, parents=True)
        elif data_dir.stat().st_mode & stat.S_IRWXO:
            raise ConfigError(f"data directory {data_dir} is accessible by others; chmod 700 it")
    key_file = settings.key_file
    db_path = (
        Path(settings.db_url.removeprefix("sqlite:///"))
        if settings.db_url.startswith("sqlite:///")
        else None
    )
    if key_file.exists():
        read_key_file(key_file)
    else:
        if db_path is not None and db_path.exists():
            raise ConfigError(
                f"{db_path} exists but the master key file {key_file} does not; refusing to "
                "create a new key (the stored values could never be decrypted)"
            )
        create_key_file(key_file)


async def _init(settings: StoreSettings, repo: Repository) -> dict[str, Any]:
    """The bootstrap admin token, when the store has no token yet."""
    from loader.store.auth import issue_token

    data_dir = settings.data_dir
    result: dict[str, Any] = {
        "data_dir": str(data_dir) if data_dir else None,
        "master_key_file": str(settings.key_file),
    }
    if await repo.count_tokens() == 0:
        record, token = await issue_token(
            repo, frozenset({"*"}), description="bootstrap admin token"
        )
        result.update(admin_token=token, id=record.id)
    return result


# -- serve ---------------------------------------------------------------------------------


def serve(ns: Any) -> int:
    settings = settings_from(ns)
    private_location(settings)
    reopen_log = setup_logging(settings.log_level, settings.log_file)
    harden_process()
    run_async(run_store(settings, reopen_log))
    return 0


async def run_store(settings: StoreSettings, reopen_log: Callable[[], None] | None = None) -> None:
    from loader.listener import bind_tcp
    from loader.server.app import create_app, serving, store_state, tls_context
    from loader.server.connections import ConnectionGuard
    from loader.server.limits import limiter_for

    address = settings.listen_address
    guard = ConnectionGuard(settings.max_connections_per_client, settings.header_timeout)
    sock = bind_tcp(address.host, address.port)  # an address in use fails before anything else
    with sock:
        ctx = (
            tls_context(settings.tls_cert, settings.tls_key)
            if settings.tls_cert and settings.tls_key
            else None
        )
        async with (
            store_state(settings, limiter=limiter_for(settings)) as state,
            serving(create_app(state), sock, address.host, ctx, guard) as url,
        ):
            tune_gc()

            def reopen() -> None:
                if reopen_log is not None:
                    reopen_log()
                state.audit.reopen()

            with signals_watched(on_hangup=reopen) as stop:  # before saying we listen
                say(f"loader store listening on {url}")
                log.info("store ready on %s (%s)", url, state.service.repo.backend)
                sig = await stop
            log.info("received %s, shutting down", sig.name)


# -- migrate -------------------------------------------------------------------------------


def migrate(ns: Any) -> int:
    settings = settings_from(ns, migrate=True)

    async def schema_change(repo: Repository) -> tuple[int, int]:
        return repo.schema_change

    before, after = on_database(
        settings, schema_change, migrate=True, init_empty=ns.init_empty, lock=True
    )
    say(migration_message(before, after))
    return 0


def migration_message(before: int, after: int) -> str:
    if before == after:
        return f"the database schema is at version {after}, up to date: nothing to do"
    if before == 0:
        return f"created the database schema (version {after}) in an empty database"
    return f"migrated the database schema from version {before} to {after}"


# -- OAuth clients and keys ----------------------------------------------------------------


def client_create(ns: Any) -> int:
    from loader.store.auth import parse_scopes

    settings = settings_from(ns)
    scopes = parse_scopes(ns.scopes)
    client_id, secret = on_database(settings, lambda repo: _issue(repo, ns, scopes, kind="client"))
    if ns.json:
        print_json({"client_id": client_id, "client_secret": secret})
    else:
        say(f"client_id:     {client_id}")
        say(f"client_secret: {secret}   (shown once)")
    return 0


def rotate_key(ns: Any) -> int:
    settings = private_location(settings_from(ns))

    from loader.store.rotation import rotate

    new_key = Path(ns.new_key_file)
    report = on_database(
        settings, lambda repo: rotate(repo, settings.key_file, new_key, reencrypt=ns.reencrypt)
    )
    if ns.json:
        print_json(
            {
                "new_key_id": report.new_key_id,
                "rewrapped": report.rewrapped,
                "reencrypted_environments": report.reencrypted_environments,
                "reencrypted_values": report.reencrypted_values,
                "key_usage": report.usage,
                "removable": report.removable,
            }
        )
        return 0
    say(f"new primary master key {report.new_key_id}; re-wrapped {report.rewrapped} data key(s)")
    if ns.reencrypt:
        say(
            f"re-encrypted {report.reencrypted_values} value(s) in "
            f"{report.reencrypted_environments} environment(s) under fresh data keys"
        )
    for key_id in report.removable:
        say(
            f"old master key {key_id} wraps nothing now: remove it with "
            f"`loader store remove-key {key_id}`"
        )
    for key_id, count in sorted(report.usage.items()):
        if key_id != report.new_key_id:
            say(f"old master key {key_id} still wraps {count} data key(s): run rotate-key again")
    return 0


def remove_key(ns: Any) -> int:
    settings = private_location(settings_from(ns))

    from loader.store.rotation import remove_key as remove

    on_database(settings, lambda repo: remove(repo, settings.key_file, ns.key_id))
    say(f"removed master key {ns.key_id} from {settings.key_file}")
    return 0


# -- tokens --------------------------------------------------------------------------------


def token_create(ns: Any) -> int:
    from loader.store.auth import parse_scopes

    settings = settings_from(ns)
    scopes = parse_scopes(ns.scopes)
    ttl = duration(ns.ttl, "--ttl") if ns.ttl else None
    token_id, token = on_database(settings, lambda repo: _issue(repo, ns, scopes, ttl=ttl))
    if ns.json:
        print_json({"token": token, "id": token_id})
    else:
        say(token)
    return 0


def token_list(ns: Any) -> int:
    from loader.store.models import iso, parse_iso, utcnow

    settings = settings_from(ns)

    async def listed(repo: Repository) -> list[dict[str, Any]]:
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "scopes": sorted(r.scopes),
                "app": r.app_id,
                "environments": list(r.environments) if r.environments else None,
                "created_at": iso(r.created_at),
                "expires_at": iso(r.expires_at) if r.expires_at else None,
                "revoked": r.revoked_at is not None,
                "description": r.description,
            }
            for r in await repo.list_tokens()
        ]

    rows = on_database(settings, listed)
    if ns.json:
        print_json({"tokens": rows})
        return 0
    say(
        f"{'ID':<16} {'KIND':<6} {'APP':<5} {'ENVS':<16} {'STATE':<8} {'EXPIRES':<20} "
        f"{'SCOPES':<28} DESCRIPTION"
    )
    now = utcnow()
    for r in rows:
        expires = r["expires_at"]
        state = "revoked" if r["revoked"] else "active"
        if not r["revoked"] and expires is not None and parse_iso(expires) <= now:
            state = "expired"
        say(
            f"{r['id']:<16} {r['kind']:<6} {r['app'] or '*':<5} "
            f"{','.join(r['environments'] or ['*']):<16} {state:<8} {expires or 'never':<20} "
            f"{','.join(r['scopes']):<28} {r['description'] or ''}"
        )
    return 0


def token_revoke(ns: Any) -> int:
    settings = settings_from(ns)

    from loader.store.models import utcnow

    if not on_database(settings, lambda repo: repo.revoke_token(ns.id, utcnow())):
        raise NotFoundError(f"no active token or client with id {ns.id}")
    say(f"revoked {ns.id}")
    return 0
