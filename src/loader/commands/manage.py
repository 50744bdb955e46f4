"""``loader apps ...`` and ``loader secrets ...``: the management API over HTTP.

Values go in through stdin or a no-echo prompt (never argv, so never shell history or ``ps``)
and never come back out: the API masks them, and these commands print names and versions only.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from loader.commands.common import add_client_options, client_config, env
from loader.console import print_json, say
from loader.errors import ConfigError, InvalidRequestError, UsageError
from loader.httpclient import HttpClient, path_quote
from loader.names import DEFAULT_ENVIRONMENT, check_environment_name, check_secret_name


def register(sub: Any) -> None:
    apps = sub.add_parser("apps", help="Create and list apps")
    asub = apps.add_subparsers(dest="apps_command", metavar="COMMAND", required=True)
    p = asub.add_parser("create", help="Create an app (it gets a default environment)")
    p.add_argument("name")
    _common(p, app=False)
    p.set_defaults(handler=apps_create)
    p = asub.add_parser("list", help="List apps")
    _common(p, app=False)
    p.set_defaults(handler=apps_list)

    env_parser = sub.add_parser("envs", help="Create and list environments")
    esub = env_parser.add_subparsers(dest="envs_command", metavar="COMMAND", required=True)
    p = esub.add_parser("create", help="Create an environment")
    p.add_argument("name")
    _common(p, env_flag=False)
    p.set_defaults(handler=envs_create)
    p = esub.add_parser("list", help="List environments")
    _common(p, env_flag=False)
    p.set_defaults(handler=envs_list)

    secrets = sub.add_parser("secrets", help="Set, inspect, list, delete and import secrets")
    ssub = secrets.add_subparsers(dest="secrets_command", metavar="COMMAND", required=True)
    p = ssub.add_parser("set", help="Set a secret; the value is read from stdin or a prompt")
    p.add_argument("name")
    p.add_argument("--description", help="A note about the secret (not secret itself)")
    p.add_argument(
        "--keep-newline",
        action="store_true",
        help="Keep a trailing newline read from stdin (removed by default)",
    )
    _common(p)
    p.set_defaults(handler=secrets_set)
    p = ssub.add_parser("get", help="Show a secret's metadata (values are never shown)")
    p.add_argument("name")
    _common(p)
    p.set_defaults(handler=secrets_get)
    p = ssub.add_parser("list", help="List secrets (names, versions; values masked)")
    _common(p)
    p.set_defaults(handler=secrets_list)
    p = ssub.add_parser("delete", help="Delete a secret")
    p.add_argument("name")
    _common(p)
    p.set_defaults(handler=secrets_delete)
    p = ssub.add_parser("import", help="Import a .env file (read with python-dotenv's parser)")
    p.add_argument("file")
    _common(p)
    p.set_defaults(handler=secrets_import)


def _common(p: Any, *, app: bool = True, env_flag: bool = True) -> None:
    if app:
        p.add_argument("--app", type=int, help="App id (LOADER_APP)")
    if env_flag and app:
        p.add_argument("--env", help="Environment (LOADER_ENVIRONMENT; default: default)")
    p.add_argument("--json", action="store_true", help="Print JSON")
    add_client_options(p)


def _client(ns: Any) -> HttpClient:
    return client_config(ns).client()


def _app(ns: Any) -> int:
    raw = ns.app if ns.app is not None else env("LOADER_APP")
    if raw is None:
        raise ConfigError("which app? pass --app ID or set LOADER_APP")
    try:
        app = int(raw)
    except ValueError:
        raise ConfigError("bad setting: LOADER_APP / --app must be an integer app id") from None
    if app < 1:
        raise ConfigError("bad setting: LOADER_APP / --app must be a positive app id")
    return app


def _env(ns: Any) -> str:
    name = getattr(ns, "env", None) or env("LOADER_ENVIRONMENT", DEFAULT_ENVIRONMENT)
    return check_environment_name(name or DEFAULT_ENVIRONMENT)


def _secrets_path(ns: Any, name: str | None = None) -> str:
    base = f"/v1/apps/{_app(ns)}/environments/{path_quote(_env(ns))}/secrets"
    return f"{base}/{path_quote(name)}" if name is not None else base


# -- apps and environments -----------------------------------------------------------------


def apps_create(ns: Any) -> int:
    app = _client(ns).call("POST", "/v1/apps", {"name": ns.name}).json()
    if ns.json:
        print_json(app)
    else:
        say(f"created app {app['id']} ({app['name']})")
    return 0


def apps_list(ns: Any) -> int:
    apps = _client(ns).call("GET", "/v1/apps").json()["apps"]
    if ns.json:
        print_json({"apps": apps})
        return 0
    say(f"{'ID':<6} {'NAME':<32} CREATED")
    for a in apps:
        say(f"{a['id']:<6} {a['name']:<32} {a['created_at']}")
    return 0


def envs_create(ns: Any) -> int:
    name = check_environment_name(ns.name)
    created = _client(ns).call("POST", f"/v1/apps/{_app(ns)}/environments", {"name": name}).json()
    if ns.json:
        print_json(created)
    else:
        say(f"created environment {created['name']} in app {created['app_id']}")
    return 0


def envs_list(ns: Any) -> int:
    envs = _client(ns).call("GET", f"/v1/apps/{_app(ns)}/environments").json()["environments"]
    if ns.json:
        print_json({"environments": envs})
        return 0
    say(f"{'NAME':<24} {'REVISION':>8}  CREATED")
    for e in envs:
        say(f"{e['name']:<24} {e['revision']:>8}  {e['created_at']}")
    return 0


# -- secrets -------------------------------------------------------------------------------


def read_value(name: str, keep_newline: bool) -> str:
    """The value from stdin (piped) or a no-echo prompt; never from argv."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value for {name} (input hidden): ")
    else:
        data = sys.stdin.buffer.read()
        try:
            value = data.decode()
        except UnicodeDecodeError:
            raise InvalidRequestError("the value read from stdin is not UTF-8 text") from None
        if not keep_newline:
            value = value.removesuffix("\n").removesuffix("\r")
    return value


def secrets_set(ns: Any) -> int:
    name = check_secret_name(ns.name)
    path = _secrets_path(ns)
    client = _client(ns)
    value = read_value(name, ns.keep_newline)
    body: dict[str, Any] = {"name": name, "value": value}
    if ns.description is not None:
        body["description"] = ns.description
    secret = client.call("POST", path, body).json()
    if ns.json:
        print_json(secret)
    else:
        say(f"set {name} (version {secret['version']}) in app {_app(ns)} / {_env(ns)}")
    return 0


def secrets_get(ns: Any) -> int:
    secret = _client(ns).call("GET", _secrets_path(ns, check_secret_name(ns.name))).json()
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
    secrets = list_all(_client(ns), _secrets_path(ns))
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
    _client(ns).call("DELETE", _secrets_path(ns, name))
    if ns.json:
        print_json({"deleted": True, "name": name})
    else:
        say(f"deleted {name}")
    return 0


def parse_env_file(path: Path) -> dict[str, str]:
    """Read a .env file with python-dotenv's parser, refusing it whole on any bad line.

    Values are taken as written (no ``${VAR}`` interpolation from this machine's environment).
    """
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    import io

    values: dict[str, str] = {}
    problems: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            problems.append(f"line {line}: cannot parse this line")
        elif binding.key is not None:
            # Keys are not echoed: in a malformed file a value may sit where a key should.
            if binding.value is None:
                problems.append(f"line {line}: no '=' (a name without a value)")
            else:
                try:
                    check_secret_name(binding.key)
                except InvalidRequestError:
                    problems.append(f"line {line}: not a valid secret name")
                    continue
                values[binding.key] = binding.value
    if problems:
        raise InvalidRequestError(f"{path}: nothing imported: " + "; ".join(problems[:10]))
    return values


def secrets_import(ns: Any) -> int:
    values = parse_env_file(Path(ns.file))
    client = _client(ns)
    path = _secrets_path(ns)
    client.call("GET", f"{path}?page_size=1")  # fail before writing if app/env/token is wrong
    for name in sorted(values):
        client.call("POST", path, {"name": name, "value": values[name]})
    if ns.json:
        print_json({"imported": sorted(values), "app": _app(ns), "environment": _env(ns)})
    else:
        say(
            f"imported {len(values)} secret(s) into app {_app(ns)} / {_env(ns)}: "
            f"{', '.join(sorted(values))}"
        )
    return 0
