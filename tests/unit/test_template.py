"""Template substitution: real spicepods from public Spice.ai repositories, hard values, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ruamel.yaml import YAML

from loader import template
from loader.errors import UnrenderableError
from tests.data import EXAMPLES, SPICE

# Values that break naive substitution into YAML.
HARD_YAML_VALUES = [
    "plain-token",
    "has: colon",
    "#starts-with-hash",
    "tail # comment?",
    "it's 'single'",
    'say "double"',
    "line1\nline2\n",
    "  leading and trailing  ",
    "- looks like a list",
    "*alias",
    "&anchor",
    "!tag value",
    "{flow: map}",
    "[a, b]",
    "%directive",
    "@at `tick`",
    "null",
    "true",
    "0x1F",
    "",
    "tab\there",
    "cr\rlf\r\n",
    "unicode ☃ 日本 😀",
    "nel\x85ls\u2028ps\u2029",
    "bom\ufeffinside",
    "C:\\path\\to",
    "bell\x07esc\x1b",
]


def _expected(doc: Any, values: dict[str, str]) -> Any:
    """The parsed document with every ${secrets:NAME} substituted in its string values."""
    if isinstance(doc, dict):
        return {_expected(k, values): _expected(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_expected(v, values) for v in doc]
    if isinstance(doc, str):
        return template.REFERENCE.sub(lambda m: values[m.group(1)], doc)
    return doc


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("value", HARD_YAML_VALUES)
def test_template_spicepod_parses_to_exact_values(path: Path, value: str) -> None:
    text = path.read_text(encoding="utf-8")
    values = {name: value + name for name in template.references(text)}
    rendered = template.render(text, values, "yaml")
    original = yaml.safe_load(text)
    assert yaml.safe_load(rendered.text) == _expected(original, values)
    # A second, independent YAML reader (YAML 1.2) agrees.
    ruamel = YAML(typ="safe", pure=True)
    assert _plain(ruamel.load(io.StringIO(rendered.text))) == _plain(
        _expected(ruamel.load(io.StringIO(text)), values)
    )
    assert set(rendered.used) == set(values)


def _plain(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=str))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_template_spicepod_schema_validity_is_kept(path: Path) -> None:
    schema = json.loads((SPICE / "spicepod.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    text = path.read_text(encoding="utf-8")
    before = sorted((e.json_path, e.validator) for e in validator.iter_errors(yaml.safe_load(text)))
    values = {n: "v: 'x' \"y\" #z\nw" for n in template.references(text)}
    rendered = template.render(text, values, "yaml").text
    after = sorted(
        (e.json_path, e.validator) for e in validator.iter_errors(yaml.safe_load(rendered))
    )
    assert after == before


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_template_keeps_everything_but_the_rewritten_scalars(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    rendered = template.render(text, {n: "x" for n in template.references(text)}, "yaml").text
    if not template.references(text):
        assert rendered == text
    # Comments and ${env:...} references survive untouched.
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            assert line in rendered
    for ref in ("${env:", "${ env:", "${ env.", "${env."):
        assert text.count(ref) == rendered.count(ref)


@pytest.mark.parametrize(
    "ref",
    ["${secrets:A}", "${ secrets:A }", "${ secrets : A }", "${secrets:A }", "${  secrets:A}"],
)
def test_template_any_spacing(ref: str) -> None:
    assert template.render(f"x={ref};", {"A": "1"}).text == "x=1;"


def test_template_other_stores_left_alone() -> None:
    text = "a: ${env:HOME}\nb: ${ store:key }\nc: ${secrets:A}\n"
    out = template.render(text, {"A": "v"}, "yaml").text
    assert "${env:HOME}" in out and "${ store:key }" in out
    assert yaml.safe_load(out) == {"a": "${env:HOME}", "b": "${ store:key }", "c": "v"}


def test_template_missing_secret_is_an_error_naming_it() -> None:
    with pytest.raises(UnrenderableError, match="MISSING") as info:
        template.render("a: ${secrets:MISSING}\nb: ${secrets:A}\n", {"A": "canary-1"}, "yaml")
    assert "canary-1" not in str(info.value)
    with pytest.raises(UnrenderableError, match="NOPE"):
        template.render("x ${secrets:NOPE}", {})


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("k: prefix-${secrets:A}-suffix # c\n", {"k": "prefix-V-suffix"}),
        ("k: 'sq ${secrets:A} '\n", {"k": "sq V "}),
        ('k: "dq ${secrets:A}\\t"\n', {"k": "dq V\t"}),
        ("k: |\n  block ${secrets:A}\n  two\nn: 1\n", {"k": "block V\ntwo\n", "n": 1}),
        ("k: >-\n  folded ${secrets:A}\n  more\nn: 1\n", {"k": "folded V more", "n": 1}),
        ("- &a ${secrets:A}\n- *a\n", ["V", "V"]),
        ("k: !!str ${secrets:A}\n", {"k": "V"}),
        ('k: ["${secrets:A}", x]\n', {"k": ["V", "x"]}),
        ("k:\n  - multi\n    line ${secrets:A}\n", {"k": ["multi line V"]}),
        ("${secrets:A}: key\n", {"V": "key"}),
    ],
)
def test_template_yaml_scalar_styles(src: str, expected: Any) -> None:
    values = {"A": "V"}
    assert yaml.safe_load(template.render(src, values, "yaml").text) == expected
    hard = {"A": "x: 'y' \"z\" #w\nv"}
    yaml.safe_load(template.render(src, hard, "yaml").text)


def test_template_invalid_yaml_template_is_refused() -> None:
    with pytest.raises(UnrenderableError, match="not valid YAML"):
        template.render("a: [${secrets:A}\n", {"A": "1"}, "yaml")


def test_template_spicepod_refuses_values_spice_would_expand() -> None:
    pod = "version: v1\nkind: Spicepod\nname: x\nruntime:\n  k: ${secrets:A}\n"
    with pytest.raises(UnrenderableError, match="A"):
        template.render(pod, {"A": "${env:AWS_SECRET}"}, "yaml")
    # Any template: loader cannot tell which files the runtime reads (component files have no
    # kind), so a value forming a reference is refused in every kind.
    for kind, src in (("yaml", "k: ${secrets:A}\n"), ("json", '{"k": "${secrets:A}"}')):
        with pytest.raises(UnrenderableError, match="A"):
            template.render(src, {"A": "${env:X}"}, kind)
    # Text the runtime would not expand is carried exactly (bash-like defaults, dots, digits).
    for value in ("${HOME:-/root}", "${a.b}", "${x:1}", "$x:y}", "${ :y}"):
        out = template.render("k: ${secrets:A}\n", {"A": value}, "yaml").text
        assert yaml.safe_load(out) == {"k": value}


def test_template_json_strings() -> None:
    src = '{"a": "${secrets:A}", "b": ["x ${ secrets:B } y"], "c": 1}'
    out = template.render(src, {"A": 'q"\\\n', "B": "☃"}, "json").text
    assert json.loads(out) == {"a": 'q"\\\n', "b": ["x ☃ y"], "c": 1}


def test_template_yaml_double_quoted_round_trips_every_code_point_class() -> None:
    sample = "".join(chr(c) for c in [*range(0, 0x100), 0x2028, 0x2029, 0xFEFF, 0xFFFD, 0x1F600])
    quoted = template.yaml_double_quoted(sample)
    assert "\n" not in quoted
    assert yaml.safe_load(f"k: {quoted}")["k"] == sample


def test_spice_warnings_name_unreferenceable_and_colliding() -> None:
    warnings = template.spice_warnings(["_internal", "api_key", "API_KEY", "GOOD"])
    text = "\n".join(warnings)
    assert "_internal" in text
    assert "api_key" in text and "API_KEY" in text
    assert "GOOD" not in text


@pytest.mark.parametrize(
    ("path", "kind"),
    [("a.yaml", "yaml"), ("b.YML", "yaml"), ("c.json", "json"), ("d.toml", "text")],
)
def test_template_kind_for(path: str, kind: str) -> None:
    assert template.kind_for(path) == kind


# -- spellings: $<secrets:NAME> (loader's) beside ${secrets:NAME} (the runtime's) ---------------

MIXED_POD = """\
version: v1
kind: Spicepod
name: mixed
secrets:
  - from: env
    name: env
datasets:
  - from: postgres:public.orders
    name: orders
    params:
      pg_pass: $<secrets:PG_PASS>      # loader renders this one
      pg_user: ${secrets:PG_USER}      # the runtime resolves this one from its env store
      pg_host: "$< secrets:PG_HOST >"
"""


def test_template_mixed_spellings_leave_the_runtimes_references_alone() -> None:
    """auto (the default): a template holding $<secrets:...> leaves ${secrets:...} to the
    runtime, even a name loader also holds (PG_USER), so loader never steals it."""
    values = {"PG_PASS": "p${w}d", "PG_HOST": "db", "PG_USER": "loader-must-not-use-this"}
    rendered = template.render(MIXED_POD, values, "yaml")
    params = yaml.safe_load(rendered.text)["datasets"][0]["params"]
    assert params == {"pg_pass": "p${w}d", "pg_user": "${secrets:PG_USER}", "pg_host": "db"}
    assert rendered.used == ("PG_HOST", "PG_PASS")
    assert "loader-must-not-use-this" not in rendered.text
    assert "# the runtime resolves this one" in rendered.text


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("auto", {"a": "1", "b": "${secrets:B}"}),
        ("angle", {"a": "1", "b": "${secrets:B}"}),
        ("brace", {"a": "$<secrets:A>", "b": "2"}),
        ("both", {"a": "1", "b": "2"}),
    ],
)
@pytest.mark.parametrize("kind", ["yaml", "json", "text"])
def test_template_spelling_chooses_what_loader_fills_in(
    spelling: str, expected: dict[str, str], kind: str
) -> None:
    values = {"A": "1", "B": "2"}
    sources = {
        "yaml": "a: $<secrets:A>\nb: ${secrets:B}\n",
        "json": '{"a": "$<secrets:A>", "b": "${secrets:B}"}',
        "text": "a=$<secrets:A>\nb=${secrets:B}\n",
    }
    out = template.render(sources[kind], values, kind, spelling).text
    if kind == "text":
        parsed = dict(line.split("=", 1) for line in out.splitlines())
    else:
        parsed = yaml.safe_load(out) if kind == "yaml" else json.loads(out)
    assert parsed == expected


def test_template_auto_without_angle_references_fills_in_braces_as_before() -> None:
    assert template.render("k: ${secrets:A}\n", {"A": "v"}, "yaml").text == 'k: "v"\n'


def test_template_angle_spelling_still_refuses_values_forming_runtime_references() -> None:
    with pytest.raises(UnrenderableError, match="would form"):
        template.render("k: $<secrets:A>\n", {"A": "${env:AWS_SECRET}"}, "yaml")
    with pytest.raises(UnrenderableError, match="not set: MISSING"):
        template.render("k: $<secrets:MISSING> ${secrets:RUNTIME}\n", {}, "yaml")


def test_template_unknown_spelling_is_refused() -> None:
    with pytest.raises(ValueError, match="spelling"):
        template.render("k: v\n", {}, "yaml", "curly")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_template_examples_in_angle_spelling_render_and_keep_schema_validity(path: Path) -> None:
    """Each real spicepod with its references respelt $<secrets:NAME>: rendered, it reads as
    the original rendered with ${secrets:NAME}, and validates against the schema as before."""
    text = path.read_text(encoding="utf-8")
    respelt = template.REFERENCE.sub(lambda m: f"$<secrets:{m.group(1)}>", text)
    values = {n: f"v-{n}: 'x' #" for n in template.references(text)}
    ours = template.render(respelt, values, "yaml").text
    assert yaml.safe_load(ours) == yaml.safe_load(template.render(text, values, "yaml").text)
    schema = json.loads((SPICE / "spicepod.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)

    def errors(doc: Any) -> list[tuple[str, str]]:
        return sorted((e.json_path, str(e.validator)) for e in validator.iter_errors(doc))

    assert errors(yaml.safe_load(ours)) == errors(yaml.safe_load(text))
