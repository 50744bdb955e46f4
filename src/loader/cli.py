"""The ``loader`` command line. The only place that turns errors into exit codes.

``loader run`` takes a fast path that imports neither argparse nor anything heavy (it runs
before every app start); every other command builds the full argparse parser.
"""

from __future__ import annotations

import sys

from loader.errors import EX_USAGE, LoaderError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


# top-level command -> the module in loader.commands that registers and runs it
COMMANDS = {
    "dev": "dev",
    "store": "store",
    "apps": "manage",
    "envs": "manage",
    "secrets": "manage",
    "agent": "agent",
    "render": "agent",
    "webhook": "webhook",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["run"]:
            from loader.runner.execmode import run_command

            return run_command(args[1:])
        return _full(args)
    except LoaderError as exc:
        print(f"loader: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


def _full(args: list[str]) -> int:
    import argparse

    from loader import __version__

    parser = argparse.ArgumentParser(
        prog="loader",
        description="Runtime secret injection: an encrypted store, a sidecar agent that renders "
        "env files and spicepods, and a runner that execs your app with its secrets.",
        epilog="Every option is also an environment variable LOADER_<NAME> (the flag wins).",
    )
    parser.add_argument("--version", action="version", version=f"loader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    import importlib

    # Only the module of the command asked for is imported (each process loads what it runs:
    # the sidecar stays free of the store's code); all of them for help and usage errors.
    wanted = COMMANDS.get(args[0]) if args else None
    for name in [wanted] if wanted else dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"loader.commands.{name}").register(sub)

    if not args:
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse exits 2 on usage errors; the contract says 64
        code = exc.code if isinstance(exc.code, int) else EX_USAGE
        return EX_USAGE if code == 2 else code
    handler: Any = ns.handler
    result: int = handler(ns)
    return result
