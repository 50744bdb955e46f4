"""The argparse parser every command uses: no prefix matching, one-line errors that never echo
an argument (a token or a value may have been typed where a name goes)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from loader.errors import UsageError
from loader.runner.options import NO_TOKEN_FLAG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# argparse's messages that carry what was typed (patterns compiled only on an error)
_CHOICE = r"^argument (?P<arg>.+?): invalid choice: .* \(choose from (?P<choices>.*)\)$"
_TYPE = r"^argument (?P<arg>.+?): invalid \S+ value: .*$"
_EXPLICIT = r"^argument (?P<arg>.+?): ignored explicit argument .*$"
_QUOTED = r"'[^']*'|\"[^\"]*\""


class Parser(argparse.ArgumentParser):
    """``allow_abbrev=False`` (``--token`` must never become ``--token-file``); subparsers are
    of this class too (argparse makes them with ``type(self)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace = namespace if namespace is not None else argparse.Namespace()
        namespace._prog = self.prog  # the innermost parser's wins: it names the command
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{_command(self.prog)}{self._explain(message)}{_see(self.prog)}")

    def _explain(self, message: str) -> str:
        if message == "the following arguments are required: COMMAND":
            return f"a command is required: {', '.join(self._choices())}"
        m = re.match(_CHOICE, message)
        if m:
            # The typed word is shown only when it is close to a real one (a typo, then).
            choices = [c.strip("'\"") for c in m["choices"].split(", ")]
            typed = _typed_choice(message)
            import difflib

            close = difflib.get_close_matches(typed, choices, n=1) if typed else []
            if close:
                return f"unknown {_what(m['arg'])} {typed!r} (did you mean {close[0]}?)"
            return f"unknown {_what(m['arg'])}; choose from {', '.join(choices)}"
        m = re.match(_TYPE, message)
        if m:
            return f"argument {m['arg']}: not a valid value"
        m = re.match(_EXPLICIT, message)
        if m:
            return f"{m['arg']} takes no value"
        return re.sub(_QUOTED, "...", message)

    def _choices(self) -> list[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []


def _typed_choice(message: str) -> str | None:
    found = re.search(r"invalid choice: '([^']*)'", message)
    return found[1] if found else None


def _what(arg: str) -> str:
    return "command" if arg == "COMMAND" else f"value for {arg}"


def _command(prog: str) -> str:
    """``"secrets list: "`` for ``loader secrets list``; nothing for ``loader`` itself."""
    command = prog.removeprefix("loader").strip()
    return f"{command}: " if command else ""


def _see(prog: str) -> str:
    return f" (see `{prog} --help`)"


def refuse_token_flag(args: Sequence[str]) -> None:
    for arg in args:
        if arg == "--":
            return
        if arg == "--token" or arg.startswith("--token="):
            raise UsageError(NO_TOKEN_FLAG)


def describe_extras(ns: argparse.Namespace, extras: Sequence[str]) -> str:
    """Arguments no parser took, without echoing any but flag names."""
    prog = getattr(ns, "_prog", "loader")
    flags = sorted({e.partition("=")[0] for e in extras if e.startswith("-") and e != "-"})
    if flags:
        what = f"unknown option{'s' if len(flags) > 1 else ''} {', '.join(flags)}"
    else:
        what = f"{len(extras)} unexpected argument{'s' if len(extras) > 1 else ''}"
    return f"{_command(prog)}{what}{_see(prog)}"
