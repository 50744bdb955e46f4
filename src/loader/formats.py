"""Env file renderers (pure): ``dotenv``, ``dotenv-expand``, ``shell``, ``docker``, ``json``.

Each renderer writes every value so that its real readers give back exactly that value, or
refuses with :class:`~loader.errors.UnrenderableError` naming *every* secret it cannot carry and
the reader that would misread it (never showing a value). A render is all or nothing.

* ``shell``  -- ``export NAME='v'`` with ``'`` as ``'\\''``: exact for bash, dash, busybox sh
  and zsh (``set -a; . file``) for any value without NUL (which no environment variable holds).
* ``dotenv`` -- per value, the first spelling every reader in :data:`DOTENV_READERS` reads back
  the same: bare ``NAME=v`` for plain values, ``NAME='v'``, or ``NAME="v"`` (``\\``, ``\"`` and
  ``\n`` escaped). :data:`SPELLINGS` lists, per spelling, what each reader misreads; the reader
  matrix in the tests proves the table against the real readers.
* ``dotenv-expand`` -- ``dotenv`` that dotenv-expand (npm) also reads exactly: it expands ``$``
  in every quoting, so any value with a ``$`` is refused. An opt-in, stricter mode.
* ``docker`` -- ``NAME=value``, raw after the ``=`` (``docker run --env-file``): one line per
  variable, so newlines and CRs are refused, as are lines past Go's 64 KiB scanner limit.
* ``json``   -- one ``{NAME: value}`` object; carries anything.

Files start with a ``# loader format=<fmt>`` comment (not ``json``), which the runner uses to
read them back quickly (:mod:`loader.envparse`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from loader import settingtypes
from loader.errors import UnrenderableError

FORMATS = settingtypes.FORMATS  # the ones rendered here (listed with the other choices)

HEADER_PREFIX = "# loader format="
_PY_DOTENV_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
_DOCKER_MAX_LINE = 64 * 1024 - 1
# Safe bare (unquoted) in every dotenv reader: no quote, space, #, $, backslash or backtick.
_BARE = re.compile(r"[A-Za-z0-9_./:@%+,=-]+")


def header(fmt: str) -> str:
    return f"{HEADER_PREFIX}{fmt} (written by loader; do not edit)\n"


@dataclass(frozen=True)
class Refusal:
    """Why one secret cannot be written: the readers that would misread it, and the cause."""

    name: str
    readers: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        if not self.readers:
            return f"{self.name} ({self.why})"
        return f"{self.name} ({self.why}; {', '.join(self.readers)} would misread it)"


# Why a value is refused: each reason is one of these fixed texts (REASONS), never the value.
_NUL = "a NUL character, which no environment variable holds"
_SHELL_OWNED = "a name the shell owns: . file cannot set it"
_DOCKER_LINE_BREAK = "a line break; docker reads one line per variable"
_DOCKER_TOO_LONG = "a line past docker's 64 KiB line limit"


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.why)
        self.refusal = refusal


def _no_nul(name: str, value: str) -> None:
    if "\x00" in value:
        raise _Refused(Refusal(name, (), _NUL))


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


# Names the shell itself owns: `_` is reset after every command, the others are read-only in
# bash (assigning them fails), so `. file` cannot hand them to the program.
SHELL_RESERVED = frozenset({"_", "BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"})


def shell_line(name: str, value: str) -> str:
    _no_nul(name, value)
    if name in SHELL_RESERVED:
        raise _Refused(Refusal(name, (), _SHELL_OWNED))
    return f"export {name}={shell_quote(value)}\n"


# -- dotenv: the readers, and what each misreads in each spelling ------------------------------

PYTHON_DOTENV = "python-dotenv"
NPM_DOTENV = "npm dotenv"
NODE = "Node util.parseEnv/--env-file"
DOTENV_RUST = "dotenv-rust"
RUBY_DOTENV = "ruby dotenv"
DOTENV_EXPAND = "dotenv-expand"
DOTENV_READERS = (PYTHON_DOTENV, NPM_DOTENV, NODE, DOTENV_RUST, RUBY_DOTENV)
READERS = {"dotenv": DOTENV_READERS, "dotenv-expand": (*DOTENV_READERS, DOTENV_EXPAND)}


@dataclass(frozen=True)
class Misread:
    """``readers`` misread a value in this spelling when ``applies(value)``."""

    applies: Callable[[str], bool]
    readers: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Spelling:
    name: str
    encode: Callable[[str], str | None]  # None: this spelling cannot hold the value at all
    misreads: tuple[Misread, ...]

    def misread_by(self, value: str) -> tuple[frozenset[str], str]:
        """The readers that misread ``value`` in this spelling, and the first cause."""
        found = [m for m in self.misreads if m.applies(value)]
        readers = frozenset(r for m in found for r in m.readers)
        return readers, (found[0].why if found else "")


_CR = Misread(lambda v: "\r" in v, DOTENV_READERS, "a carriage return (CR)")
_DOLLAR_EXPANDED = Misread(lambda v: "$" in v, (DOTENV_EXPAND,), "a $, expanded in every quoting")
_PY_EXPANDED = Misread(
    lambda v: _PY_DOTENV_VARIABLE.search(v) is not None, (PYTHON_DOTENV,), "a ${...} reference"
)


def _single(value: str) -> str | None:
    return None if "'" in value else f"'{value}'"


def _double(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


SPELLINGS = (
    Spelling("bare", lambda v: v if _BARE.fullmatch(v) else None, ()),
    Spelling(
        "single-quoted",
        _single,
        (
            _CR,
            _PY_EXPANDED,
            Misread(lambda v: "\n" in v, (DOTENV_RUST, RUBY_DOTENV), "a line break"),
            Misread(
                lambda v: v.endswith("\\"), (PYTHON_DOTENV, NPM_DOTENV), "a trailing backslash"
            ),
            Misread(lambda v: "\\\\" in v, (PYTHON_DOTENV,), "two backslashes in a row"),
            _DOLLAR_EXPANDED,
        ),
    ),
    Spelling(
        "double-quoted",
        _double,
        (
            _CR,
            _PY_EXPANDED,
            Misread(
                lambda v: '"' in v or "\\" in v,
                (NPM_DOTENV, NODE),
                'a " or \\, which double quotes escape with a backslash',
            ),
            Misread(lambda v: re.search(r"\\[nr]", v) is not None, (RUBY_DOTENV,), "a \\n or \\r"),
            Misread(lambda v: v.endswith("\\"), (PYTHON_DOTENV,), "a trailing backslash"),
            Misread(lambda v: "$" in v, (DOTENV_RUST, RUBY_DOTENV, DOTENV_EXPAND), "a $"),
        ),
    ),
)


# Shortcuts for the common cases (tests check them against the full table, for both reader
# sets): every single-quote misread needs one of the first characters, so a value without them
# is '...'; a value that has one of them but none of the second, has a ' or a line break, which
# single quotes cannot hold or dotenv-rust and ruby dotenv misread, and is "...".
_SINGLE_SAFE = re.compile(r"[^'\n\r\\$\x00]*")
_DOUBLE_SAFE = re.compile(r"[^\"\r\\$\x00]*")


def dotenv_value(name: str, value: str, readers: Iterable[str] = DOTENV_READERS) -> str:
    """The first spelling of ``value`` that every one of ``readers`` reads back exactly."""
    if _BARE.fullmatch(value):
        return value
    if _SINGLE_SAFE.fullmatch(value):
        return f"'{value}'"
    if _DOUBLE_SAFE.fullmatch(value):
        return _double(value)
    return spell_dotenv(name, value, readers)


def spell_dotenv(name: str, value: str, readers: Iterable[str] = DOTENV_READERS) -> str:
    """:func:`dotenv_value` without its shortcuts: every spelling, in order, against the table."""
    _no_nul(name, value)
    wanted = frozenset(readers)
    best: tuple[int, Refusal] | None = None
    for spelling in SPELLINGS:
        text = spelling.encode(value)
        if text is None:
            continue
        misread, why = spelling.misread_by(value)
        misread &= wanted
        if not misread:
            return text
        if best is None or len(misread) < best[0]:
            ordered = tuple(r for r in READERS["dotenv-expand"] if r in misread)
            best = (len(misread), Refusal(name, ordered, f"it has {why}"))
    assert best is not None  # double quotes hold any value
    raise _Refused(best[1])


REASONS = frozenset(
    {_NUL, _SHELL_OWNED, _DOCKER_LINE_BREAK, _DOCKER_TOO_LONG}
    | {f"it has {m.why}" for spelling in SPELLINGS for m in spelling.misreads}
)


def dotenv_line(name: str, value: str, readers: Iterable[str] = DOTENV_READERS) -> str:
    return f"{name}={dotenv_value(name, value, readers)}\n"


def _dotenv_expand_line(name: str, value: str) -> str:
    return dotenv_line(name, value, READERS["dotenv-expand"])


def docker_line(name: str, value: str) -> str:
    _no_nul(name, value)
    if "\n" in value or "\r" in value:
        raise _Refused(Refusal(name, (), _DOCKER_LINE_BREAK))
    line = f"{name}={value}"
    if len(line.encode()) > _DOCKER_MAX_LINE:
        raise _Refused(Refusal(name, (), _DOCKER_TOO_LONG))
    return line + "\n"


def _json_line(name: str, value: str) -> str:
    return json.dumps(name, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)


def _json_file(lines: list[str]) -> str:
    return "{\n" + ",\n".join(f"  {line}" for line in lines) + "\n}\n" if lines else "{}\n"


def _lines_file(fmt: str) -> Callable[[list[str]], str]:
    return lambda lines: header(fmt) + "".join(lines)


_WRITERS: dict[str, tuple[Callable[[str, str], str], Callable[[list[str]], str]]] = {
    "dotenv": (dotenv_line, _lines_file("dotenv")),
    "dotenv-expand": (_dotenv_expand_line, _lines_file("dotenv-expand")),
    "shell": (shell_line, _lines_file("shell")),
    "docker": (docker_line, _lines_file("docker")),
    "json": (_json_line, _json_file),
}


def refusals(fmt: str, values: Mapping[str, str]) -> list[Refusal]:
    """Every secret of ``values`` that ``fmt`` cannot carry, in name order (empty: all fit)."""
    line = _WRITERS[fmt][0]
    out: list[Refusal] = []
    for name in sorted(values):
        try:
            line(name, values[name])
        except _Refused as exc:
            out.append(exc.refusal)
    return out


def _refusal_error(fmt: str, found: list[Refusal], values: Mapping[str, str]) -> UnrenderableError:
    names = [r.name for r in found]
    subset = {n: values[n] for n in names}
    carriers = [f for f in FORMATS if f != fmt and not refusals(f, subset)]
    listed = (
        ", ".join(carriers[:-1]) + " or " + carriers[-1] if len(carriers) > 1 else "".join(carriers)
    )
    hint = f"; the {listed} format carries {'it' if len(names) == 1 else 'them'}"
    noun = "secret" if len(names) == 1 else f"{len(names)} secrets"
    message = f"cannot write {fmt}: {noun} {', '.join(map(str, found))}{hint if carriers else ''}"
    return UnrenderableError(message, names[0], tuple(names))


def render(fmt: str, values: Mapping[str, str]) -> str:
    """The file ``fmt`` holding every value, or one error naming every secret it cannot carry."""
    try:
        line, file = _WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    lines: list[str] = []
    for name in sorted(values):
        try:
            lines.append(line(name, values[name]))
        except _Refused:
            raise _refusal_error(fmt, refusals(fmt, values), values) from None
    return file(lines)


CONTENT_TYPES = {
    "dotenv": "text/plain; charset=utf-8",
    "dotenv-expand": "text/plain; charset=utf-8",
    "shell": "text/x-shellscript; charset=utf-8",
    "docker": "text/plain; charset=utf-8",
    "json": "application/json",
}
