"""Env file renderers (pure): ``shell``, ``dotenv``, ``docker``, ``json``.

Each renderer writes every value so that its real reader gives back exactly that value, or
refuses with :class:`~loader.errors.UnrenderableError` naming the secret (never showing it):

* ``shell``  -- ``export NAME='v'`` with ``'`` as ``'\\''``: exact for ``sh``/``bash`` ``. file``
  for any value without NUL (which no environment variable can hold).
* ``dotenv`` -- read back exactly by python-dotenv (default interpolation on) *and* the Rust
  dotenv parser the Spice runtime's dotenvy grew from. Their common ground: single quotes when
  the value has no ``'``, no line break and no backslash python-dotenv would decode; otherwise
  double quotes escaping ``\\``, ``"`` and newline, when the value has no ``$`` (Rust expands it
  and python-dotenv has no escape for it). A ``${NAME}`` pattern is expanded by python-dotenv in
  every quoting, and a CR cannot be written so both read it back: those are refused.
* ``docker`` -- ``NAME=value``, raw after the ``=`` (``docker run --env-file``): one line per
  variable, so newlines and CRs are refused, as are lines past Go's 64 KiB scanner limit.
* ``json``   -- one ``{NAME: value}`` object.

Files start with a ``# loader format=<fmt>`` comment (not ``json``), which the runner uses to
read them back quickly (:mod:`loader.envparse`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from loader.errors import UnrenderableError

FORMATS = ("dotenv", "shell", "docker", "json")
HEADER_PREFIX = "# loader format="
_PY_DOTENV_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
_DOCKER_MAX_LINE = 64 * 1024 - 1


def header(fmt: str) -> str:
    return f"{HEADER_PREFIX}{fmt} (written by loader; do not edit)\n"


def _refuse(fmt: str, name: str, reason: str) -> UnrenderableError:
    return UnrenderableError(f"secret {name} cannot be written as {fmt}: {reason}", name)


def _no_nul(fmt: str, name: str, value: str) -> None:
    if "\x00" in value:
        raise _refuse(fmt, name, "it contains a NUL character, which no environment variable holds")


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


# Names the shell itself owns: `_` is reset after every command, the others are read-only in
# bash (assigning them fails), so `. file` cannot hand them to the program.
SHELL_RESERVED = frozenset({"_", "BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"})


def shell_line(name: str, value: str) -> str:
    _no_nul("shell", name, value)
    if name in SHELL_RESERVED:
        raise _refuse("shell", name, "the shell owns that variable name")
    return f"export {name}={shell_quote(value)}\n"


def dotenv_value(name: str, value: str) -> str:
    _no_nul("dotenv", name, value)
    if "\r" in value:
        raise _refuse("dotenv", name, "it contains a carriage return (CR)")
    if _PY_DOTENV_VARIABLE.search(value):
        raise _refuse("dotenv", name, "python-dotenv would expand its ${...} reference")
    if "'" not in value and "\n" not in value and "\\\\" not in value and not value.endswith("\\"):
        return f"'{value}'"
    if "$" not in value:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    raise _refuse(
        "dotenv",
        name,
        "it has a $ together with a quote, backslash or newline, which python-dotenv and "
        "dotenvy read differently (use the shell or json format)",
    )


def dotenv_line(name: str, value: str) -> str:
    return f"{name}={dotenv_value(name, value)}\n"


def docker_line(name: str, value: str) -> str:
    _no_nul("docker", name, value)
    if "\n" in value or "\r" in value:
        raise _refuse("docker", name, "docker env files hold one line per variable")
    line = f"{name}={value}"
    if len(line.encode()) > _DOCKER_MAX_LINE:
        raise _refuse("docker", name, "the line exceeds docker's 64 KiB line limit")
    return line + "\n"


def _render_lines(fmt: str, line: Callable[[str, str], str], values: Mapping[str, str]) -> str:
    return header(fmt) + "".join(line(name, values[name]) for name in sorted(values))


def render_shell(values: Mapping[str, str]) -> str:
    return _render_lines("shell", shell_line, values)


def render_dotenv(values: Mapping[str, str]) -> str:
    return _render_lines("dotenv", dotenv_line, values)


def render_docker(values: Mapping[str, str]) -> str:
    return _render_lines("docker", docker_line, values)


def render_json(values: Mapping[str, str]) -> str:
    return json.dumps({k: values[k] for k in sorted(values)}, ensure_ascii=False, indent=2) + "\n"


RENDERERS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "dotenv": render_dotenv,
    "shell": render_shell,
    "docker": render_docker,
    "json": render_json,
}


def render(fmt: str, values: Mapping[str, str]) -> str:
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    return renderer(values)


CONTENT_TYPES = {
    "dotenv": "text/plain; charset=utf-8",
    "shell": "text/x-shellscript; charset=utf-8",
    "docker": "text/plain; charset=utf-8",
    "json": "application/json",
}
