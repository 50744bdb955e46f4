"""``loader apps ...``, ``loader envs ...`` and ``loader secrets ...``: the management API over
HTTP.

Values go in through stdin or a no-echo prompt (never argv, so never shell history or ``ps``).
They come back out only when asked for by name with a token that may reveal them
(``secrets get --reveal``, ``secrets download``): the store audits both as reveals.
"""

from __future__ import annotations

import argparse
import sys

from loader.commands.invocation import (
    Target,
    add_command_options,
    add_settings,
    allow_disk,
    confirm,
    debug,
)
from loader.envparse import INTERPOLATION_RULE
from loader.errors import DataError, NotFoundError, UsageError
from loader.httpclient import HttpClient
from loader.names import check_environment_name, check_secret_name
from loader.output import print_json, say
from loader.settingtypes import FORMATS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def build(name: str, parser: Any) -> None:
    {"apps": _apps, "envs": _envs, "secrets": _secrets}[name](parser)


def _apps(apps: Any) -> None:
    asub = apps.add_subparsers(dest="apps_command", metavar="COMMAND", required=True)
    p = asub.add_parser("create", help="Create an app (it gets a default environment)")
    p.add_argument("name")
    add_command_options(p, app=False)
    p.set_defaults(handler=apps_create)
    p = asub.add_parser("list", help="List apps")
    add_command_options(p, app=False)
    p.set_defaults(handler=apps_list)
    p = asub.add_parser("delete", help="Delete an app with all its environments and secrets")
    p.add_argument("app", metavar="APP", help="App name or id")
    _yes(p)
    add_command_options(p, app=False)
    p.set_defaults(handler=apps_delete)


def _envs(envs: Any) -> None:
    esub = envs.add_subparsers(dest="envs_command", metavar="COMMAND", required=True)
    p = esub.add_parser("create", help="Create an environment")
    p.add_argument("name")
    add_command_options(p, environment=False)
    p.set_defaults(handler=envs_create)
    p = esub.add_parser("list", help="List environments")
    add_command_options(p, environment=False)
    p.set_defaults(handler=envs_list)
    p = esub.add_parser("delete", help="Delete an environment (not default) and its secrets")
    p.add_argument("name")
    _yes(p)
    add_command_options(p, environment=False)
    p.set_defaults(handler=envs_delete)


def _secrets(secrets: Any) -> None:
    ssub = secrets.add_subparsers(dest="secrets_command", metavar="COMMAND", required=True)
    p = ssub.add_parser(
        "set",
        help="Set a secret; the value is read from stdin or a prompt",
        description="Set a secret. The value is read from stdin (piped) or a no-echo prompt; "
        "never from an argument (argv shows in `ps` and shell history).",
    )
    p.add_argument("name")
    p.add_argument("value", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--description", help="A note about the secret (not secret itself)")
    p.add_argument(
        "--keep-newline",
        action="store_true",
        help="Keep a trailing newline read from stdin (removed by default)",
    )
    p.add_argument(
        "--allow-empty", action="store_true", help="Store an empty value (refused otherwise)"
    )
    add_command_options(p)
    p.set_defaults(handler=secrets_set)

    p = ssub.add_parser("get", help="Show a secret's metadata (--reveal: its value)")
    p.add_argument("name")
    p.add_argument(
        "--reveal",
        action="store_true",
        help="Print the value (needs secrets:reveal; audited as a reveal). For debugging",
    )
    add_command_options(p)
    p.set_defaults(handler=secrets_get)

    p = ssub.add_parser("list", help="List secrets (names, versions; values masked)")
    add_command_options(p)
    p.set_defaults(handler=secrets_list)

    p = ssub.add_parser("delete", help="Delete a secret")
    p.add_argument("name")
    add_command_options(p)
    p.set_defaults(handler=secrets_delete)

    p = ssub.add_parser(
        "import",
        help="Import a .env file, or stdin with '-' (python-dotenv's parser)",
        description=f"Reads the file with python-dotenv's parser: {INTERPOLATION_RULE} (the "
        "same rule as loader run --from-file). A bad line imports nothing.",
    )
    p.add_argument("file", help="The .env file, or - for stdin")
    p.add_argument(
        "--literal",
        action="store_true",
        help="Store ${...} references as written (no interpolation)",
    )
    add_command_options(p)
    p.set_defaults(handler=secrets_import)

    p = ssub.add_parser("versions", help="List a secret's versions (no values)")
    p.add_argument("name")
    add_command_options(p)
    p.set_defaults(handler=secrets_versions)

    p = ssub.add_parser("rollback", help="Restore an old version's value as a new version")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True, help="The version to restore")
    add_command_options(p)
    p.set_defaults(handler=secrets_rollback)

    p = ssub.add_parser(
        "download",
        help="Write the environment's secrets to a file in an agent format",
        description="Writes the secrets the way the agent does: atomically, mode 0600, only on "
        "tmpfs/ramfs unless --allow-disk. Needs secrets:reveal; audited as a reveal.",
    )
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument(
        "--output", required=True, help="The file to write; - for stdout (only with --reveal)"
    )
    p.add_argument("--names", help="Only these secrets (comma-separated)")
    p.add_argument(
        "--reveal", action="store_true", help="Allow --output - (values on your terminal)"
    )
    add_settings(p, "allow_disk")
    add_command_options(p)
    p.set_defaults(handler=secrets_download)


def _yes(p: Any) -> None:
    p.add_argument("--yes", action="store_true", help="Do not ask (required when not on a TTY)")


# -- apps and environments -----------------------------------------------------------------


def apps_create(ns: Any) -> int:
    app = Target(ns).client.call("POST", "/v1/apps", {"name": ns.name}).json()
    if ns.json:
        print_json(app)
    else:
        say(f"created app {app['id']} ({app['name']})")
    return 0


def apps_list(ns: Any) -> int:
    apps = Target(ns).client.call("GET", "/v1/apps").json()["apps"]
    if ns.json:
        print_json({"apps": apps})
        return 0
    say(f"{'ID':<6} {'NAME':<32} CREATED")
    for a in apps:
        say(f"{a['id']:<6} {a['name']:<32} {a['created_at']}")
    return 0


def apps_delete(ns: Any) -> int:
    target = Target(ns)
    app = target.client.call("GET", target.app_path()).json()
    confirm(ns, f"Delete app {app['name']} (id {app['id']}) with all its environments and secrets?")
    target.client.call("DELETE", target.app_path())
    if ns.json:
        print_json({"deleted": True, "app": app["id"], "name": app["name"]})
    else:
        say(f"deleted app {app['id']} ({app['name']})")
    return 0


def envs_create(ns: Any) -> int:
    name = check_environment_name(ns.name)
    target = Target(ns)
    created = target.client.call("POST", target.app_path("/environments"), {"name": name}).json()
    if ns.json:
        print_json(created)
    else:
        say(f"created environment {created['name']} in app {created['app_id']}")
    return 0


def envs_list(ns: Any) -> int:
    target = Target(ns)
    envs = target.client.call("GET", target.app_path("/environments")).json()["environments"]
    if ns.json:
        print_json({"environments": envs})
        return 0
    say(f"{'NAME':<24} {'REVISION':>8}  CREATED")
    for e in envs:
        say(f"{e['name']:<24} {e['revision']:>8}  {e['created_at']}")
    return 0


def envs_delete(ns: Any) -> int:
    ns.environment = check_environment_name(ns.name)
    target = Target(ns)
    target.client.call("GET", target.env_path())  # 404 before asking
    confirm(ns, f"Delete environment {ns.environment} of app {target.app} with all its secrets?")
    target.client.call("DELETE", target.env_path())
    if ns.json:
        print_json({"deleted": True, "app": target.app, "environment": ns.environment})
    else:
        say(f"deleted environment {ns.environment} of app {target.app}")
    return 0


# -- secrets -------------------------------------------------------------------------------


def read_value(name: str, keep_newline: bool) -> str:
    """The value from stdin (piped) or a no-echo prompt; never from argv."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Value for {name} (input hidden): ")
    data = sys.stdin.buffer.read()
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise DataError("the value read from stdin is not UTF-8 text") from None
    if not keep_newline:
        value = value.removesuffix("\n").removesuffix("\r")
    return value


def secrets_set(ns: Any) -> int:
    if ns.value:
        raise UsageError(
            "secrets set: values come from stdin or the prompt, never from arguments "
            '(e.g. `printf %s "$VALUE" | loader secrets set NAME`)'
        )
    name = check_secret_name(ns.name)
    target = Target(ns)
    path = target.secrets_path()
    value = read_value(name, ns.keep_newline)
    if value == "" and not ns.allow_empty:
        raise DataError(
            f"refusing to store an empty value for {name} (stdin was empty); "
            "pass --allow-empty to mean it"
        )
    body: dict[str, Any] = {"name": name, "value": value}
    if ns.description is not None:
        body["description"] = ns.description
    secret = target.client.call("POST", path, body).json()
    if ns.json:
        print_json(secret)
    elif secret.get("changed") is False:
        say(f"unchanged {name}")
    else:
        say(f"set {name} (version {secret['version']}) in {target.where()}")
    return 0


def reveal(target: Target, names: list[str] | None) -> dict[str, Any]:
    """The environment's values (``rendered?mode=full``): needs secrets:reveal, audited."""
    query = "?mode=full&format=json"
    if names:
        query += "&names=" + ",".join(names)
    debug("revealing %s in %s", ",".join(names) if names else "every secret", target.where())
    data: dict[str, Any] = target.client.call("GET", target.env_path("/rendered" + query)).json()
    return data


def secrets_get(ns: Any) -> int:
    name = check_secret_name(ns.name)
    target = Target(ns)
    if ns.reveal:
        data = reveal(target, [name])
        if name not in data["secrets"]:
            state = "has no value" if name in data.get("unset", ()) else "not found"
            raise NotFoundError(f"secret {name} {state} in {target.where()}")
        if ns.json:
            print_json({"name": name, "value": data["secrets"][name]})
        else:
            sys.stdout.write(data["secrets"][name] + "\n")
            sys.stdout.flush()
        return 0
    secret = target.client.call("GET", target.secrets_path(name)).json()
    if ns.json:
        print_json(secret)
        return 0
    for key in (
        "name",
        "environment",
        "version",
        "has_value",
        "description",
        "created_at",
        "updated_at",
        "etag",
    ):
        say(f"{key + ':':<13}{secret.get(key)}")
    return 0


def list_all(client: HttpClient, path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        data = client.call("GET", f"{path}?page={page}&page_size=1000").json()
        out.extend(data["secrets"])
        if page >= data["total_pages"]:
            return out
        page += 1


def secrets_list(ns: Any) -> int:
    target = Target(ns)
    secrets = list_all(target.client, target.secrets_path())
    if ns.json:
        print_json({"secrets": secrets})
        return 0
    say(f"{'NAME':<40} {'VERSION':>7}  {'SET':<5} UPDATED")
    for s in secrets:
        say(
            f"{s['name']:<40} {s['version']:>7}  {'yes' if s['has_value'] else 'no':<5} "
            f"{s['updated_at']}"
        )
    return 0


def secrets_delete(ns: Any) -> int:
    name = check_secret_name(ns.name)
    target = Target(ns)
    target.client.call("DELETE", target.secrets_path(name))
    if ns.json:
        print_json({"deleted": True, "name": name})
    else:
        say(f"deleted {name}")
    return 0


def secrets_versions(ns: Any) -> int:
    name = check_secret_name(ns.name)
    target = Target(ns)
    versions = target.client.call("GET", target.secrets_path(name) + "/versions").json()
    if ns.json:
        print_json(versions)
        return 0
    say(f"{'VERSION':>7}  {'VALUE':<7} {'ACTOR':<16} CREATED")
    for v in versions["versions"]:
        kept = "kept" if v["has_value"] else "dropped"
        say(f"{v['version']:>7}  {kept:<7} {v['actor'] or '-':<16} {v['created_at']}")
    return 0


def secrets_rollback(ns: Any) -> int:
    name = check_secret_name(ns.name)
    if ns.version < 1:
        raise UsageError("secrets rollback: --version must be at least 1")
    target = Target(ns)
    secret = target.client.call(
        "POST", target.secrets_path(name) + "/rollback", {"version": ns.version}
    ).json()
    if ns.json:
        print_json(secret)
    else:
        say(
            f"rolled {name} back to the value of version {ns.version} "
            f"(now version {secret['version']}) in {target.where()}"
        )
    return 0


def secrets_download(ns: Any) -> int:
    from loader import formats

    to_stdout = ns.output == "-"
    if to_stdout and not ns.reveal:
        raise UsageError(
            "secrets download: --output - prints values on your terminal: add --reveal to mean it"
        )

    from pathlib import Path

    path = None if to_stdout else Path(ns.output)
    if path is not None:
        from loader.fsio import check_secret_target

        check_secret_target(path, allow_disk(ns))  # before any value is fetched
    names = [check_secret_name(n.strip()) for n in (ns.names or "").split(",") if n.strip()]
    target = Target(ns)
    data = reveal(target, names or None)
    values: dict[str, str] = data["secrets"]
    missing = [n for n in names if n not in values]
    if missing:
        raise NotFoundError(f"--names: not set in {target.where()}: {', '.join(missing)}")
    text = formats.render(ns.format, values)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    from loader.fsio import atomic_write

    atomic_write(path, text.encode(), mode=0o600)
    say(f"wrote {len(values)} secret(s) from {target.where()} to {path} ({ns.format})")
    return 0


def parse_env_text(text: str, where: str, *, interpolate: bool = True) -> dict[str, str]:
    """Read .env text as ``loader run --from-file`` does (:func:`loader.envparse.dotenv_values`),
    refusing it whole on any bad line."""
    from loader.envparse import EnvParseError, dotenv_values
    from loader.names import is_secret_name

    try:
        return dotenv_values(text, interpolate=interpolate, valid_name=is_secret_name)
    except EnvParseError as exc:
        raise DataError(f"{where}: nothing imported: {exc}") from None


def read_env_source(file: str) -> tuple[str, str]:
    """``(text, where)`` of a .env file, or of stdin for ``-``."""
    if file == "-":
        data, where = sys.stdin.buffer.read(), "stdin"
    else:
        try:
            with open(file, "rb") as f:
                data, where = f.read(), file
        except FileNotFoundError:
            raise NotFoundError(f"{file}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{file} is a directory, not a .env file") from None
        except OSError as exc:
            raise NotFoundError(f"cannot read {file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8"), where
    except UnicodeDecodeError:
        raise DataError(f"{where} is not UTF-8 text") from None


def secrets_import(ns: Any) -> int:
    values = parse_env_text(*read_env_source(ns.file), interpolate=not ns.literal)
    target = Target(ns)
    path = target.secrets_path()
    # Fail before writing anything if the app, environment or token is wrong.
    target.client.call("GET", f"{path}?page_size=1")
    changed: list[str] = []
    unchanged: list[str] = []
    for name in sorted(values):
        secret = target.client.call("POST", path, {"name": name, "value": values[name]}).json()
        (unchanged if secret.get("changed") is False else changed).append(name)
    if ns.json:
        print_json(
            {
                "imported": changed,
                "unchanged": unchanged,
                "app": target.app,
                "environment": target.environment,
            }
        )
        return 0
    for name in unchanged:
        say(f"unchanged {name}")
    if changed:
        say(f"imported {len(changed)} secret(s) into {target.where()}: {', '.join(changed)}")
    return 0
