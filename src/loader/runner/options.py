"""``loader run`` options: one table, read by a small argv parser on the exec path (argparse
costs more to import than the rest of ``loader run`` together) and by argparse for ``--help``.

Every option is also ``LOADER_<NAME>``; the flag wins.
"""

from __future__ import annotations

from loader.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


class Option:
    """One option; ``metavar`` None makes it a switch. (A plain class: ``dataclasses`` imports
    ``inspect``, too slow for the exec path.)"""

    __slots__ = ("dest", "env", "flag", "metavar", "text")

    def __init__(
        self, flag: str, dest: str, env: str, text: str, metavar: str | None = None
    ) -> None:
        self.flag, self.dest, self.env, self.text, self.metavar = flag, dest, env, text, metavar

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


OPTIONS: tuple[Option, ...] = (
    Option(
        "--from-file",
        "from_file",
        "LOADER_FROM_FILE",
        "read secrets from this env file (any format the agent writes)",
        "FILE",
    ),
    Option(
        "--format",
        "format",
        "LOADER_FORMAT",
        "the file's format: dotenv|dotenv-expand|shell|docker|json (default: guessed from the "
        "content)",
        "FMT",
    ),
    Option(
        "--literal",
        "literal",
        "LOADER_LITERAL",
        "take ${...} in a hand-written .env file as written (default: ${NAME} is NAME's value "
        "above in the same file, as secrets import reads it)",
    ),
    Option(
        "--agent-url",
        "agent_url",
        "LOADER_AGENT_URL",
        "a local agent: http://127.0.0.1:PORT or unix:/path.sock",
        "URL",
    ),
    Option(
        "--store-url",
        "store_url",
        "LOADER_STORE_URL",
        "the store itself (with LOADER_TOKEN or --token-file, and --app)",
        "URL",
    ),
    Option(
        "--token-file", "token_file", "LOADER_TOKEN_FILE", "file holding the store token", "FILE"
    ),
    Option("--ca-file", "ca_file", "LOADER_CA_FILE", "CA bundle for an https store", "FILE"),
    Option("--app", "app", "LOADER_APP", "app id (store source)", "ID"),
    Option(
        "--env",
        "environment",
        "LOADER_ENVIRONMENT",
        "environment (store source; default: default)",
        "NAME",
    ),
    Option("--only", "only", "LOADER_ONLY", "only these secrets (comma-separated)", "NAMES"),
    Option("--prefix", "prefix", "LOADER_PREFIX", "prefix each variable name", "PREFIX"),
    Option(
        "--override",
        "override",
        "LOADER_OVERRIDE",
        "secrets replace existing variables (default: existing variables win)",
    ),
    Option(
        "--watch",
        "watch",
        "LOADER_WATCH",
        "supervise CMD: forward signals, restart it when the secrets change",
    ),
    Option(
        "--mask", "mask", "LOADER_MASK", "replace secret values in CMD's stdout/stderr with ******"
    ),
    Option(
        "--restart-signal",
        "restart_signal",
        "LOADER_RESTART_SIGNAL",
        "signal that stops CMD for a restart (default SIGTERM)",
        "SIG",
    ),
    Option(
        "--reload-signal",
        "reload_signal",
        "LOADER_RELOAD_SIGNAL",
        "on a change, send this signal instead of restarting (e.g. SIGHUP)",
        "SIG",
    ),
    Option(
        "--grace",
        "grace",
        "LOADER_GRACE",
        "how long CMD has to exit before SIGKILL (default 10s)",
        "DURATION",
    ),
    Option(
        "--debounce",
        "debounce",
        "LOADER_DEBOUNCE",
        "wait this long for further changes before restarting (default 0.25s)",
        "DURATION",
    ),
    Option(
        "--splay",
        "splay",
        "LOADER_SPLAY",
        "then wait a random time up to this long, so a fleet does not restart at once (default 0)",
        "DURATION",
    ),
    Option(
        "--timeout",
        "timeout",
        "LOADER_TIMEOUT",
        "give up reaching the agent or store after this long (default 10s)",
        "DURATION",
    ),
)
_BY_FLAG = {o.flag: o for o in OPTIONS}
NO_TOKEN_FLAG = (
    "there is no --token flag (argv shows in `ps` and shell history): "
    "use LOADER_TOKEN or --token-file"
)
TRUE = frozenset({"1", "true", "yes", "on"})


class RunOptions:
    __slots__ = ("command", "switches", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.switches: set[str] = set()
        self.command: list[str] = []

    def get(self, dest: str, default: str | None = None) -> str | None:
        return self.values.get(dest, default)

    def on(self, dest: str) -> bool:
        return dest in self.switches


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> RunOptions:
    """Flags up to ``--`` (or the first non-option), then the command; env fills the rest."""
    opts = RunOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("--"):
            break
        flag, eq, inline = arg.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None:
            if flag == "--token":
                raise UsageError(f"run: {NO_TOKEN_FLAG}")
            raise UsageError(f"run: unknown option {flag} (see loader run --help)")
        if option.takes_value:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"run: {flag} needs a value")
            opts.values[option.dest] = value
        else:
            if eq:
                raise UsageError(f"run: {flag} takes no value")
            opts.switches.add(option.dest)
        i += 1
    opts.command = list(argv[i:])
    for option in OPTIONS:
        raw = environ.get(option.env)
        if raw in (None, ""):
            continue
        if option.takes_value:
            opts.values.setdefault(option.dest, raw)
        elif raw.lower() in TRUE:
            opts.switches.add(option.dest)
    if not opts.command:
        raise UsageError("run: no command given (loader run [OPTIONS] -- CMD [ARGS...])")
    return opts


def wants_help(argv: Sequence[str]) -> bool:
    for arg in argv:
        if arg == "--" or not arg.startswith("-"):
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def add_run_arguments(p: Any) -> None:
    """The options on an argparse parser (for ``loader run --help`` and completion)."""
    from loader.envparse import INTERPOLATION_RULE

    p.description = (
        "Gets the secrets (--from-file, a local agent at LOADER_AGENT_URL, or the store), adds "
        "them to the environment and execs CMD: the process becomes CMD. With --watch (or "
        "--mask) loader stays as CMD's parent instead. --from-file reads a hand-written .env "
        f"file with python-dotenv's parser, as secrets import does: {INTERPOLATION_RULE} "
        "(--literal: no interpolation)."
    )
    p.epilog = (
        "Exit codes: CMD's own; 127 command not found; 126 not executable; 64 usage; 65 a file "
        "that cannot be read as secrets; 66 a --from-file or --only name that does not exist; "
        "69 agent/store unreachable; 77 token refused; 78 bad configuration."
    )
    for option in OPTIONS:
        if option.takes_value:
            p.add_argument(
                option.flag, metavar=option.metavar, help=f"{option.text} ({option.env})"
            )
        else:
            p.add_argument(option.flag, action="store_true", help=f"{option.text} ({option.env})")
    p.add_argument("command", nargs="+", metavar="-- CMD [ARGS...]")


def print_help() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="loader run", allow_abbrev=False)
    add_run_arguments(parser)
    parser.print_help()
