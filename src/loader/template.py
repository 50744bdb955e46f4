"""``$<secrets:NAME>`` and ``${secrets:NAME}`` substitution (pure).

Two spellings name a secret loader fills in. ``$<secrets:NAME>`` is loader's own: the Spice
runtime never reads it, so a spicepod can mix values loader renders with ``${secrets:NAME}``
references the runtime resolves from its own stores. ``${secrets:NAME}`` is the runtime's
spelling, which loader also fills in for templates written before ``$<...>`` existed. Which
spellings a template uses is its *spelling* (:data:`SPELLINGS`):

* ``auto`` (the default): ``$<secrets:NAME>`` when the template holds one, so its
  ``${secrets:...}`` references are left for the runtime; otherwise ``${secrets:NAME}``;
* ``angle``: ``$<secrets:NAME>`` only; ``brace``: ``${secrets:NAME}`` only; ``both``.

Three kinds of template:

* **yaml** (spicepods and other YAML): only the scalars that hold a ``${secrets:...}`` reference
  are rewritten, each as one double-quoted YAML scalar whose parsed value is the substituted
  string; every other byte (comments, anchors, layout) is kept. The output is parsed again and
  each rewritten scalar checked, so a file that would not read back exactly is refused.
* **json**: the same, string by string.
* **text**: plain replacement.

Other references (``${env:X}``, ``${ store:key }``) are left for the Spice runtime. A reference to
a missing secret is an error naming it. Errors and warnings carry names, never values.

The Spice runtime expands ``${store:key}`` in the files it reads, and loader cannot tell which
files those are (component files such as ``datasets/x/dataset.yaml`` carry no ``kind``; a text
template may be a spicepod). So for every kind of template, each rewritten scalar (yaml, json)
or the whole rendered text (text) may hold a runtime reference only where the template itself
wrote one: a reference that a value forms, alone or with the template text or other values
around it (``${secrets:U}:${secrets:P}`` with ``U='${secrets'``, ``P='API_KEY}'``), is refused.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml

from loader.errors import UnrenderableError
from loader.names import is_spice_key
from loader.settingtypes import TEMPLATE_SPELLINGS

REFERENCE = re.compile(r"\$\{\s*secrets\s*:\s*([^}\s]*)\s*\}")
ANGLE_REFERENCE = re.compile(r"\$<\s*secrets\s*:\s*([^>\s]*)\s*>")
_EITHER = re.compile(f"{ANGLE_REFERENCE.pattern}|{REFERENCE.pattern}")
SPELLINGS = TEMPLATE_SPELLINGS
# What the Spice runtime's lexer expands (crates/runtime/src/secrets/lexer.rs): "${", store, ":",
# key, "}" with whitespace between; any whitespace here, so the check errs on refusing.
RUNTIME_REFERENCE = re.compile(r"\$\{\s*[a-zA-Z][a-zA-Z0-9_-]*\s*:\s*[a-zA-Z][a-zA-Z0-9_-]*\s*\}")
_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    used: tuple[str, ...]


def kind_for(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".json"):
        return "json"
    return "text"


def references(text: str) -> list[str]:
    return [m.group(1) for m in REFERENCE.finditer(text)]


def loader_references(template: str, spelling: str = "auto") -> re.Pattern[str]:
    """The pattern of the references loader fills in, for this template and spelling (the
    secret's name is the match's last group)."""
    if spelling == "auto":
        spelling = "angle" if ANGLE_REFERENCE.search(template) else "brace"
    if spelling == "angle":
        return ANGLE_REFERENCE
    if spelling == "brace":
        return REFERENCE
    if spelling == "both":
        return _EITHER
    raise ValueError(f"unknown template spelling {spelling!r}")


def names_in(text: str, pattern: re.Pattern[str]) -> list[str]:
    """The secret names ``pattern``'s references in ``text`` name, in order."""
    return [m.group(m.lastindex or 0) for m in pattern.finditer(text)]


class _Substituter:
    def __init__(self, values: Mapping[str, str], pattern: re.Pattern[str] = REFERENCE) -> None:
        self.values = values
        self.pattern = pattern
        self.used: set[str] = set()
        self.missing: set[str] = set()

    def __call__(self, text: str) -> str:
        """``text`` with its references replaced, checked as a whole (see the module doc)."""
        pieces: list[str] = []
        placed: list[tuple[int, int, str]] = []  # where each value landed in the output
        cursor = size = 0
        for match in self.pattern.finditer(text):
            literal = text[cursor : match.start()]
            name = match.group(match.lastindex or 0)
            value = self.values.get(name)
            if value is None:
                self.missing.add(name)
                value = match.group(0)
            else:
                self.used.add(name)
                placed.append((size + len(literal), size + len(literal) + len(value), name))
            pieces += (literal, value)
            size += len(literal) + len(value)
            cursor = match.end()
        pieces.append(text[cursor:])
        out = "".join(pieces)
        if placed:
            _check_formed_references(out, placed)
        return out

    def finish(self) -> None:
        if self.missing:
            names = ", ".join(sorted(self.missing))
            raise UnrenderableError(
                f"the template references secret(s) that are not set: {names}",
                sorted(self.missing)[0],
            )


def _check_formed_references(out: str, placed: list[tuple[int, int, str]]) -> None:
    """Refuse a runtime reference in ``out`` that overlaps a substituted value."""
    for match in RUNTIME_REFERENCE.finditer(out):
        start, end = match.span()
        names = sorted({name for a, b, name in placed if a < end and start < b})
        if names:
            raise UnrenderableError(
                f"secret(s) {', '.join(names)} would form a ${{store:key}} reference that the "
                "Spice runtime would expand; refusing to render them as is",
                names[0],
            )


def render(
    template: str, values: Mapping[str, str], kind: str = "text", spelling: str = "auto"
) -> Rendered:
    pattern = loader_references(template, spelling)
    if kind == "yaml":
        return render_yaml(template, values, pattern)
    if kind == "json":
        return render_json(template, values, pattern)
    sub = _Substituter(values, pattern)
    out = sub(template)
    sub.finish()
    return Rendered(out, tuple(sorted(sub.used)))


# -- YAML ----------------------------------------------------------------------------------

_YAML_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\x00": "\\0",
    "\x07": "\\a",
    "\x08": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\x0b": "\\v",
    "\x0c": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    "\x85": "\\N",
    "\xa0": "\\_",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def yaml_double_quoted(value: str) -> str:
    """One-line YAML double-quoted scalar whose parsed value is exactly ``value``."""
    out = ['"']
    for ch in value:
        esc = _YAML_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        code = ord(ch)
        if 0x20 <= code <= 0x7E or (
            (0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000)
            and code != 0xFEFF
        ):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:  # pragma: no cover - every code point >= 0x10000 is printable above
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# libyaml where PyYAML was built with it: it checks and re-reads whole files many times faster.
# Scalar positions always come from the pure-Python scanner (character offsets, well defined).
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=16)
def _analyse_yaml(template: str) -> tuple[yaml.ScalarToken, ...]:
    """The template's scalars, worked out once per template text (the agent renders the same
    template on every change)."""
    tokens = _scalar_tokens(template, "the template", yaml.SafeLoader)
    # Check it parses as a whole too (the scanner alone accepts some structural errors).
    try:
        for _ in yaml.compose_all(template, Loader=_FAST_LOADER):
            pass
    except yaml.YAMLError as exc:
        raise UnrenderableError(f"the template is not valid YAML{_where(exc)}") from None
    return tuple(tokens)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _scalar_tokens(text: str, what: str, loader: type) -> list[yaml.ScalarToken]:
    try:
        return [t for t in yaml.scan(text, Loader=loader) if isinstance(t, yaml.ScalarToken)]
    except yaml.YAMLError as exc:
        raise UnrenderableError(f"{what} is not valid YAML{_where(exc)}") from None


def render_yaml(
    template: str, values: Mapping[str, str], pattern: re.Pattern[str] = REFERENCE
) -> Rendered:
    tokens = _analyse_yaml(template)
    sub = _Substituter(values, pattern)
    pieces: list[str] = []
    expected: list[str] = []
    cursor = 0
    for token in tokens:
        if not pattern.search(token.value):
            continue
        new_value = sub(token.value)
        start, end = token.start_mark.index, token.end_mark.index
        span = template[start:end]
        replacement = yaml_double_quoted(new_value)
        if token.style in ("|", ">"):
            replacement += span[len(span.rstrip()) :]  # keep the line break(s) after the block
        pieces.append(template[cursor:start])
        pieces.append(replacement)
        expected.append(new_value)
        cursor = end
    sub.finish()
    pieces.append(template[cursor:])
    out = "".join(pieces)
    _verify_yaml(out, tokens, expected, pattern)
    return Rendered(out, tuple(sorted(sub.used)))


def _verify_yaml(
    out: str,
    original: tuple[yaml.ScalarToken, ...],
    expected: list[str],
    pattern: re.Pattern[str],
) -> None:
    """The output must scan to the same scalars, the rewritten ones holding exactly their values."""
    after = _scalar_tokens(out, "the rendered template", _FAST_LOADER)
    wanted = iter(expected)
    if len(after) != len(original):
        raise UnrenderableError("the rendered template does not keep the template's structure")
    for before, now in zip(original, after, strict=True):
        target = next(wanted) if pattern.search(before.value) else before.value
        if now.value != target:
            raise UnrenderableError(
                "a substituted value does not read back exactly from the rendered YAML "
                f"(line {now.start_mark.line + 1})"
            )


# -- JSON ----------------------------------------------------------------------------------


def render_json(
    template: str, values: Mapping[str, str], pattern: re.Pattern[str] = REFERENCE
) -> Rendered:
    try:
        json.loads(template)
    except ValueError as exc:
        raise UnrenderableError(f"the template is not valid JSON: {exc.args[0][:80]}") from None
    sub = _Substituter(values, pattern)

    def one(match: re.Match[str]) -> str:
        literal = match.group(0)
        decoded = json.loads(literal)
        if not pattern.search(decoded):
            return literal
        return json.dumps(sub(decoded), ensure_ascii=False)

    out = _JSON_STRING.sub(one, template)
    sub.finish()
    json.loads(out)
    return Rendered(out, tuple(sorted(sub.used)))


# -- warnings ------------------------------------------------------------------------------


def spice_warnings(names: Iterable[str]) -> list[str]:
    """Names-only warnings about secrets a spicepod cannot reference as such."""
    warnings = []
    by_upper: dict[str, list[str]] = {}
    for name in sorted(names):
        if not is_spice_key(name):
            warnings.append(
                f"secret {name} cannot be referenced from a spicepod "
                "(Spice secret keys match [a-zA-Z][a-zA-Z0-9_-]*)"
            )
        by_upper.setdefault(name.upper(), []).append(name)
    for upper, group in sorted(by_upper.items()):
        if len(group) > 1:
            warnings.append(
                f"secrets {', '.join(group)} collide as {upper} in the Spice env secret store "
                "(it upper-cases keys)"
            )
    return warnings
