"""Read env files back (pure; stdlib only, no ``re``: ``loader run`` imports this on its exec path).

Files the agent wrote start with ``# loader format=<fmt>``; their grammar is exactly what
:mod:`loader.formats` writes, so a small strict reader handles them without importing anything
heavy. Anything else -- a hand-written ``.env``, or an agent file someone edited -- goes to
python-dotenv's parser (imported only then), the reference reader for ``.env`` input:
:func:`read_dotenv` gives every line as a :class:`Binding`, bad ones as data, and
:func:`dotenv_values` is the one reader of ``loader run --from-file`` and ``secrets import``.

Round trips (render -> parse) are proven against the real readers in the tests.
"""

from __future__ import annotations

from loader.settingtypes import FORMATS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

HEADER_PREFIX = "# loader format="
# What loader writes bare (unquoted) in a dotenv file.
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@%+,=-")


class EnvParseError(ValueError):
    """A file that is not what it claims to be (the message names a line, never a value)."""


def detect(text: str) -> str:
    """The format of ``text``: its loader header, JSON by its first character, else dotenv."""
    if text.startswith(HEADER_PREFIX):
        end = text.find(" ", len(HEADER_PREFIX))
        newline = text.find("\n")
        stop = min(x for x in (end, newline, len(text)) if x >= 0)
        fmt = text[len(HEADER_PREFIX) : stop]
        if fmt in FORMATS:
            return fmt
    if text.lstrip()[:1] == "{":
        return "json"
    return "dotenv"


def parse(text: str, fmt: str | None = None, *, interpolate: bool = True) -> dict[str, str]:
    """The variables of an env file in ``fmt`` (guessed when None). ``interpolate`` concerns
    hand-written dotenv files only (:data:`INTERPOLATION_RULE`); loader's own never need it."""
    fmt = fmt or detect(text)
    canonical = text.startswith(HEADER_PREFIX + fmt)
    fmt = "dotenv" if fmt == "dotenv-expand" else fmt  # the same grammar, fewer values
    if fmt == "json":
        return parse_json(text)
    try:
        if fmt == "shell" and canonical:
            return parse_shell(text)
        if fmt == "docker":
            return parse_docker(text)
        if fmt == "dotenv" and canonical:
            return parse_canonical_dotenv(text)
    except EnvParseError:
        if fmt == "docker":
            raise
    if fmt == "shell":
        return parse_shell(text)
    return dotenv_values(text, interpolate=interpolate)


def _lines(text: str) -> list[str]:
    return text.split("\n")


def parse_shell(text: str) -> dict[str, str]:
    """``export NAME='v'`` lines, where a value may span lines and ``'`` is written ``'\\''``."""
    out: dict[str, str] = {}
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            i, line = i + 1, line + 1
            continue
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if not text.startswith("export ", i):
            raise EnvParseError(f"line {line}: expected export NAME='value'")
        eq = text.find("=", i)
        if eq < 0:
            raise EnvParseError(f"line {line}: expected export NAME='value'")
        name = text[i + 7 : eq].strip()
        i = eq + 1
        parts: list[str] = []
        while True:
            if i >= n or text[i] != "'":
                raise EnvParseError(f"line {line}: expected a single-quoted value")
            close = text.find("'", i + 1)
            if close < 0:
                raise EnvParseError(f"line {line}: unterminated quote")
            segment = text[i + 1 : close]
            parts.append(segment)
            line += segment.count("\n")
            i = close + 1
            if text.startswith("\\''", i):
                parts.append("'")
                i += 2  # onto the quote that opens the next segment
                continue
            break
        out[name] = "".join(parts)
        if i < n and text[i] != "\n":
            raise EnvParseError(f"line {line}: trailing characters after the value")
    return out


def parse_canonical_dotenv(text: str) -> dict[str, str]:
    """What :func:`loader.formats.dotenv_line` writes: ``NAME=v``, ``NAME='v'`` or ``NAME="v"``."""
    out: dict[str, str] = {}
    for number, raw in enumerate(_lines(text), 1):
        if not raw or raw.startswith("#"):
            continue
        name, sep, rest = raw.partition("=")
        if sep and rest and _BARE.issuperset(rest):
            out[name] = rest
            continue
        if not sep or len(rest) < 2 or rest[0] != rest[-1] or rest[0] not in "'\"":
            raise EnvParseError(f"line {number}: not in loader's dotenv form")
        body = rest[1:-1]
        if rest[0] == "'":
            if "'" in body:
                raise EnvParseError(f"line {number}: not in loader's dotenv form")
            out[name] = body
            continue
        chars: list[str] = []
        j = 0
        while j < len(body):
            c = body[j]
            if c == "\\":
                nxt = body[j + 1 : j + 2]
                if nxt == "n":
                    chars.append("\n")
                elif nxt in ("\\", '"'):
                    chars.append(nxt)
                else:
                    raise EnvParseError(f"line {number}: unexpected escape")
                j += 2
            elif c == '"':
                raise EnvParseError(f"line {number}: not in loader's dotenv form")
            else:
                chars.append(c)
                j += 1
        out[name] = "".join(chars)
    return out


def parse_docker(text: str) -> dict[str, str]:
    """docker's ``--env-file`` rule: ``NAME=value``, raw after the first ``=``."""
    out: dict[str, str] = {}
    for number, raw in enumerate(_lines(text), 1):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name or " " in name or "\t" in name:
            raise EnvParseError(f"line {number}: expected NAME=value")
        out[name] = value
    return out


def parse_json(text: str) -> dict[str, str]:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise EnvParseError("not valid JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise EnvParseError("expected one JSON object of string values")
    return data


INTERPOLATION_RULE = (
    "${NAME} and ${NAME:-default} are replaced, in any quoting, by the value NAME has above "
    "in the same file (python-dotenv's default interpolation, read within the file); a "
    "reference to a name not defined above is an error"
)


class Binding:
    """One line of a ``.env`` file as read (python-dotenv's ``Binding``): a name and its value,
    nothing (a comment, a blank line), or what is wrong with it -- bad lines are data. An error
    names the line's fault, never its value or name."""

    __slots__ = ("error", "line", "name", "value")

    def __init__(
        self, line: int, name: str | None, value: str | None, error: str | None = None
    ) -> None:
        self.line, self.name, self.value, self.error = line, name, value, error

    def __repr__(self) -> str:  # (tests; the value is never shown)
        return f"Binding(line={self.line}, name={self.name!r}, error={self.error!r})"


def read_dotenv(text: str, *, interpolate: bool = True) -> list[Binding]:
    """Any ``.env`` file, read with python-dotenv's parser, line by line.

    With ``interpolate``, :data:`INTERPOLATION_RULE` applies -- never this process's own
    environment, so the same file gives the same values on every machine. A line python-dotenv
    cannot parse, a name without ``=`` (python-dotenv reads it as unset) and a reference to a
    name not defined above are errors.
    """
    import io

    from dotenv.parser import parse_stream
    from dotenv.variables import Variable, parse_variables

    defined: dict[str, str] = {}
    out: list[Binding] = []
    for binding in parse_stream(io.StringIO(text)):
        key, value = binding.key, binding.value
        # python-dotenv counts from where the binding's text starts, blank lines before it
        # included: the line of the binding itself is after them.
        original = binding.original.string
        gap = original[: len(original) - len(original.lstrip())]
        line = binding.original.line + gap.count("\n")
        if binding.error:
            out.append(Binding(line, None, None, "cannot parse this line"))
        elif key is None:
            continue  # a comment or a blank line
        elif value is None:
            out.append(Binding(line, key, None, "no '=' (a name without a value)"))
        elif not interpolate:
            out.append(Binding(line, key, value))
            defined[key] = value
        else:
            atoms = list(parse_variables(value))
            if any(
                isinstance(a, Variable) and a.default is None and a.name not in defined
                for a in atoms
            ):
                error = (
                    "a ${...} reference names no variable defined above it "
                    "(--literal keeps ${...} as written)"
                )
                out.append(Binding(line, key, None, error))
                continue
            value = "".join(atom.resolve(defined) for atom in atoms)
            out.append(Binding(line, key, value))
            defined[key] = value
    return out


MAX_PROBLEMS = 10


def dotenv_values(
    text: str, *, interpolate: bool = True, valid_name: Callable[[str], bool] | None = None
) -> dict[str, str]:
    """The variables of any ``.env`` file (:func:`read_dotenv`), for ``loader run --from-file``
    and ``loader secrets import`` alike: a file with any bad line is refused whole, with one
    :class:`EnvParseError` naming its first :data:`MAX_PROBLEMS` problems. ``valid_name``: the
    names the caller can take (a name it refuses is a problem too)."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for binding in read_dotenv(text, interpolate=interpolate):
        error = binding.error
        if error is None and valid_name is not None and not valid_name(str(binding.name)):
            error = "not a valid secret name"
        if error is not None:
            problems.append(f"line {binding.line}: {error}")
        elif binding.name is not None and binding.value is not None:
            values[binding.name] = binding.value
    if problems:
        raise EnvParseError("; ".join(problems[:MAX_PROBLEMS]))
    return values
