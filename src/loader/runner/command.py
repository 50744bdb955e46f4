"""The command ``loader run`` starts: its environment (the base plus the secrets, as the flags
say), and its path found as ``execvpe`` would find it (126 not executable, 127 not found, like
a shell). Shared by exec mode and supervise mode; stdlib basics only (the exec path).
"""

from __future__ import annotations

import os
import sys

from loader.errors import CommandNotExecutableError, CommandNotFoundError
from loader.runner.env import build_env, parse_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from loader.runner.options import RunOptions


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
