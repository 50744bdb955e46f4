"""The ``loader`` command line. The only place that turns errors into exit codes.

``loader run`` takes a fast path that imports neither argparse nor anything heavy (it runs
before every app start). Every other command builds an argparse parser in which only the
command asked for gets its arguments (and only its module is imported): ``loader --help`` and
``loader secrets list`` import no server, store or agent code.
"""

from __future__ import annotations

import sys

from loader.errors import EX_USAGE, LoaderError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any


# top-level command -> (the module in loader.commands that builds and runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("dev", "Run everything locally with a demo app (like `vault server -dev`)"),
    "store": ("store", "Run and administer the secrets store"),
    "apps": ("manage", "Create, list and delete apps"),
    "envs": ("manage", "Create, list and delete environments"),
    "secrets": ("manage", "Set, inspect, list, version, import and download secrets"),
    "audit": ("audit", "Show an app's audit log (names, never values)"),
    "rollout": ("rollout", "Follow a rotation through the fleet; set its restart budget"),
    "agent": ("agent", "Run the sidecar: follow the store, render files, serve the local endpoint"),
    "render": ("agent", "Fetch and render once, then exit (Kubernetes init container)"),
    "run": ("run", "Exec CMD with its secrets in its environment (or supervise it with --watch)"),
    "webhook": ("webhook", "Run the Kubernetes admission webhook that injects the agent into pods"),
    "completion": ("completion", "Print a shell completion script (bash or zsh)"),
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


def run_main(argv: Sequence[str] | None = None) -> int:
    """``loader-run ARGS``, the standalone executable (scripts/loader-run, frozen by
    scripts/build-loader-run): ``loader run ARGS``, plus ``--version``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from loader import __version__

        print(f"loader-run {__version__}")
        return 0
    if getattr(sys, "frozen", False):
        _restore_environ()
    return main(["run", *args])


def _restore_environ() -> None:
    """Undo what the frozen executable's bootloader added to the environment, so the command
    gets the environment ``loader-run`` got: its ``_PYI_*`` markers, and ``LD_LIBRARY_PATH``
    pointing at the bundled libraries (which would replace the app's own libssl and friends);
    PyInstaller keeps the original value in ``LD_LIBRARY_PATH_ORIG``."""
    import os

    for name in [n for n in os.environ if n.startswith("_PYI_")]:
        del os.environ[name]
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = original


def build_parser(wanted: str | None) -> argparse.ArgumentParser:
    """The parser; ``wanted`` (a command name, or ``"*"`` for all) gets its arguments."""
    import importlib

    from loader import __version__
    from loader.commands.parser import Parser

    parser = Parser(
        prog="loader",
        description="Runtime secret injection: an encrypted store, a sidecar agent that renders "
        "env files and spicepods, and a runner that execs your app with its secrets.",
        epilog="Every option is also an environment variable LOADER_<NAME> (the flag wins). "
        "Exit codes: 64 usage, 65 bad input data, 66 not found, 69 unreachable, 73 exists, "
        "75 temporary, 77 refused, 78 configuration.",
    )
    parser.add_argument("--version", action="version", version=f"loader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if wanted in (name, "*"):
            importlib.import_module(f"loader.commands.{module}").build(name, p)
    return parser


def _full(args: list[str]) -> int:
    from loader.commands.parser import refuse_token_flag

    refuse_token_flag(args)
    wanted = args[0] if args and args[0] in COMMANDS else None
    if wanted == "completion":
        wanted = "*"  # the script covers every command
    parser = build_parser(wanted)
    if not args:
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        ns, extras = parser.parse_known_args(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    if extras:
        from loader.commands.parser import describe_extras

        raise UsageError(describe_extras(ns, extras))
    from loader.envcheck import warn_unknown

    warn_unknown()
    handler: Any = ns.handler
    if wanted == "*":
        ns.parser = parser
    result: int = handler(ns)
    return result
