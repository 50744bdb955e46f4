"""``loader run`` in exec mode: read the secrets, build the environment, become the command.

This runs before every app start, so it imports only the stdlib basics (no argparse, no re, no
asyncio, no aiohttp/pydantic/cryptography): supervise mode, masking and the store client are
imported only when asked for.
"""

from __future__ import annotations

import os
import sys

from loader.credentials import scrub_environ
from loader.envcheck import warn_unknown
from loader.errors import CommandNotExecutableError, CommandNotFoundError
from loader.runner.env import build_env, parse_names
from loader.runner.options import parse, print_help, wants_help
from loader.runner.sources import make_source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from loader.runner.options import RunOptions


def run_command(argv: Sequence[str]) -> int:
    if wants_help(argv):
        print_help()
        return 0
    opts = parse(argv, os.environ)
    warn_unknown(os.environ)
    source = make_source(opts, os.environ)
    scrub_environ()  # the token is read: no later child can find it in our environment
    if opts.on("watch") or opts.on("mask"):
        from loader.runner.supervise import supervise

        return supervise(opts, source)
    env = child_env(opts, os.environ, source.load())
    exec_command(opts.command, env)
    return 0  # pragma: no cover - exec does not return


def child_env(
    opts: RunOptions, base: Mapping[str, str], secrets: Mapping[str, str]
) -> dict[str, str]:
    return build_env(
        base,
        secrets,
        override=opts.on("override"),
        only=parse_names(opts.get("only")),
        prefix=opts.get("prefix") or "",
    )


def resolve(command: str, env: Mapping[str, str]) -> str:
    """``command``'s path as ``execvpe`` would find it, telling "not found" from "not
    executable" (127 and 126, like a shell)."""
    if "/" in command:
        candidates = [command]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [os.path.join(d or ".", command) for d in path.split(os.pathsep)]
    denied = None
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
        elif os.path.isdir(candidate) and "/" in command:
            denied = candidate
    if denied is not None:
        raise CommandNotExecutableError(f"not executable: {command}")
    raise CommandNotFoundError(f"command not found: {command}")


def exec_command(command: list[str], env: Mapping[str, str]) -> None:
    path = resolve(command[0], env)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(path, command, dict(env))
    except PermissionError:
        raise CommandNotExecutableError(f"not executable: {command[0]}") from None
    except OSError as exc:
        raise CommandNotExecutableError(f"cannot execute {command[0]}: {exc.strerror}") from None
