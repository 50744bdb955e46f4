"""``loader run`` options: one table, read by a small argv parser on the exec path (argparse
costs more to import than the rest of ``loader run`` together) and by argparse for ``--help``.

Every option is also ``LOADER_<NAME>``; the flag wins, then the variable, then the table's
default. Values stay text here: each is parsed where it is used, with the parsers of
:mod:`loader.settingtypes` (those the agent's and the store's settings use too).
"""

from __future__ import annotations

from loader.errors import UsageError
from loader.settingtypes import (
    FORMATS,
    RESTART_POLICIES,
    TEMPLATE_FORMATS,
    TRUE,
    Choice,
    Option,
    add_options,
    duration,
)
from loader.workload import DEFAULT_JWT_FILE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T")


OPTIONS: tuple[Option, ...] = (
    Option("--from-file", "read secrets from this env file (any format the agent writes)", "FILE"),
    Option(
        "--format",
        f"the file's format: {'|'.join(FORMATS)} (default: guessed from the content)",
        "FMT",
    ),
    Option(
        "--literal",
        "take ${...} in a hand-written .env file as written (default: ${NAME} is NAME's value "
        "above in the same file, as secrets import reads it)",
    ),
    Option("--agent-url", "a local agent: http://127.0.0.1:PORT or unix:/path.sock", "URL"),
    Option("--store-url", "the store itself (with LOADER_TOKEN or --token-file, and --app)", "URL"),
    Option("--token-file", "file holding the store token", "FILE"),
    Option(
        "--auth",
        "token (LOADER_TOKEN, --token-file) or jwt: trade the workload's JWT (--jwt-file) at "
        "the store for an access token",
        "MODE",
        default="token",
    ),
    Option(
        "--jwt-file",
        "the workload's JWT for --auth jwt (a projected service-account token, a CI job's "
        "OIDC token)",
        "FILE",
        default=DEFAULT_JWT_FILE,
    ),
    Option("--ca-file", "CA bundle for an https store", "FILE"),
    Option("--app", "app id (store source)", "ID"),
    Option("--env", "environment (store source)", "NAME", default="default", dest="environment"),
    Option("--only", "only these secrets (comma-separated)", "NAMES"),
    Option("--prefix", "prefix each variable name", "PREFIX"),
    Option("--override", "secrets replace existing variables (default: existing variables win)"),
    Option("--watch", "supervise CMD: forward signals, restart it when the secrets change"),
    Option("--mask", "replace secret values in CMD's stdout/stderr with ******"),
    Option("--restart-signal", "signal that stops CMD for a restart", "SIG", default="SIGTERM"),
    Option(
        "--reload-signal",
        "on a change, send this signal instead of restarting (e.g. SIGHUP)",
        "SIG",
    ),
    Option(
        "--template",
        "render this template (a spicepod, any file with $<secrets:NAME>) to DEST before CMD "
        "starts and, with --watch, on each change; repeatable",
        "SRC:DEST",
        repeat=True,
    ),
    Option("--template-output", "where a single --template SRC renders", "DEST"),
    Option(
        "--template-format",
        f"template syntax: {'|'.join(TEMPLATE_FORMATS)} (auto: each file by extension)",
        "FMT",
        default="auto",
    ),
    Option(
        "--template-spelling",
        "references loader fills in: angle $<secrets:N>, brace ${secrets:N}, both; auto: "
        "angle when the template has one, else brace",
        "SPELLING",
        default="auto",
    ),
    Option("--allow-disk", "allow rendering templates outside tmpfs/ramfs"),
    Option(
        "--restart",
        f"{'|'.join(RESTART_POLICIES)}: with --watch, whether a change restarts CMD; auto: not "
        "when the changed secrets reach it only through spicepod dataset/model/catalog params "
        "(its pods watcher reloads those)",
        "WHEN",
        default="auto",
    ),
    Option("--grace", "how long CMD has to exit before SIGKILL", "DURATION", default="10s"),
    Option(
        "--debounce",
        "wait this long for further changes before restarting",
        "DURATION",
        default="0.25s",
    ),
    Option(
        "--splay",
        "then wait a random time up to this long, so a fleet does not restart at once",
        "DURATION",
        default="0s",
    ),
    Option(
        "--timeout",
        "give up reaching the agent or store after this long",
        "DURATION",
        default="10s",
    ),
    Option(
        "--log-level",
        "what --watch reports: debug|info|warning|error",
        "LEVEL",
        default="warning",
    ),
    # The rollout (issue 20): a restarted CMD is healthy once these say so; until then the
    # runner holds its restart slot, and if it never is, CMD goes back to the previous secrets.
    Option(
        "--ready-check",
        "after a restart, CMD is healthy once this command exits 0 or this http(s) URL "
        "answers 2xx (tried every 0.5s)",
        "CMD|URL",
    ),
    Option(
        "--min-ready",
        "after a restart, CMD is healthy once it has run this long",
        "DURATION",
        default="0s",
    ),
    Option(
        "--ready-timeout",
        "a restarted CMD not healthy by then goes back to the previous secrets",
        "DURATION",
        default="60s",
    ),
    Option(
        "--consumer-id",
        "how this runner names itself to the store (default: random per process)",
        "ID",
    ),
)
_BY_FLAG = {flag: o for o in OPTIONS for flag in o.flags}
_BY_DEST = {o.dest: o for o in OPTIONS}
NO_TOKEN_FLAG = (
    "there is no --token flag (argv shows in `ps` and shell history): "
    "use LOADER_TOKEN or --token-file"
)


class RunOptions:
    __slots__ = ("command", "lists", "switches", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}  # repeatable options
        self.switches: set[str] = set()
        self.command: list[str] = []

    def get(self, dest: str) -> str | None:
        """The option's value (flag, then variable), else the table's default."""
        return self.values.get(dest) or _BY_DEST[dest].default

    def many(self, dest: str) -> list[str]:
        """A repeatable option's values (flags, else the variable's)."""
        return self.lists.get(dest, [])

    def duration(self, dest: str) -> float:
        """A duration option in seconds; a bad one is a usage error naming its flag."""
        return self._parsed(dest, duration)

    def choice(self, dest: str, options: tuple[str, ...]) -> str:
        return self._parsed(dest, Choice(options, lower=True))

    def _parsed(self, dest: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(self.get(dest) or "")
        except ValueError as exc:
            raise UsageError(f"run: {_BY_DEST[dest].flag}: {exc}") from None

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
            if option.repeat:
                opts.lists.setdefault(option.dest, []).append(value)
            else:
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
        if option.repeat:
            opts.lists.setdefault(option.dest, [raw])
        elif option.takes_value:
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
    add_options(p, OPTIONS)
    p.add_argument("command", nargs="+", metavar="-- CMD [ARGS...]")


def print_help() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="loader run", allow_abbrev=False)
    add_run_arguments(parser)
    parser.print_help()
