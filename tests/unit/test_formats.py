"""Every renderer against its real reader, over a table of hard values.

Each value is either read back exactly by the format's reader(s), or refused with an error that
names the secret; the table says which, so a renderer that refused everything would fail too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loader import formats
from loader.errors import UnrenderableError
from tests import readers

# name -> (value, formats that must refuse it)
HARD_VALUES: dict[str, tuple[str, set[str]]] = {
    "SINGLE_QUOTE": ("it's", set()),
    "DOUBLE_QUOTE": ('say "hi"', set()),
    "BOTH_QUOTES": ("'a' \"b\"", set()),
    "BACKSLASH": ("C:\\temp\\new", set()),
    "DOUBLE_BACKSLASH": ("a\\\\b", set()),
    "TRAILING_BACKSLASH": ("ends\\", set()),
    "BACKSLASH_N": ("not\\na newline", set()),
    "DOLLAR": ("pa$$word", set()),
    "DOLLAR_ONLY": ("$", set()),
    "DOLLAR_VAR": ("$HOME/x", set()),
    "DOLLAR_BRACE": ("${HOME}", {"dotenv"}),
    "DOLLAR_BRACE_DEFAULT": ("${X:-fallback}", {"dotenv"}),
    "DOLLAR_AND_QUOTE": ("it's $5", {"dotenv"}),
    "HASH": ("a # not a comment", set()),
    "LEADING_HASH": ("#value", set()),
    "EQUALS": ("a=b==c", set()),
    "SPACES": ("  padded  ", set()),
    "TAB": ("a\tb", set()),
    "NEWLINE": ("line1\nline2", {"docker"}),
    "TRAILING_NEWLINE": ("line\n", {"docker"}),
    "CRLF": ("a\r\nb", {"dotenv", "docker"}),
    "CR": ("a\rb", {"dotenv", "docker"}),
    "UNICODE": ("héllo ☃ 日本 😀", set()),
    "RTL_AND_NBSP": ("\u05e9\u05dc\u05d5\u05dd\u00a0x", set()),
    "EMPTY": ("", set()),
    "BACKTICK": ("`rm -rf /` $(id)", set()),
    "JSON_LIKE": ('{"k": ["v", 1]}', set()),
    "URL": ("postgres://u:p%40ss@db:5432/x?sslmode=require", set()),
    "PEM": ("-----BEGIN KEY-----\nMIIB+/=\n-----END KEY-----\n", {"docker"}),
    "NUL": ("a\x00b", {"dotenv", "docker", "shell"}),
}


def _write(tmp_path: Path, fmt: str, values: dict[str, str]) -> Path:
    path = tmp_path / f"out.{fmt}"
    path.write_text(formats.render(fmt, values), encoding="utf-8")
    return path


def _reads(fmt: str, path: Path) -> list[dict[str, str | None]]:
    if fmt == "shell":
        return [readers.read_bash(path)]
    if fmt == "docker":
        return [readers.read_docker_env_file(path)]
    if fmt == "json":
        return [readers.read_json(path)]
    out: list[dict[str, str | None]] = [readers.read_python_dotenv(path)]
    if readers.dotenv_rust_available():
        out.append(readers.read_dotenv_rust(path))
    return out


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("name", sorted(HARD_VALUES))
def test_format_round_trips_or_refuses_naming_the_secret(
    tmp_path: Path, fmt: str, name: str
) -> None:
    value, refused_by = HARD_VALUES[name]
    if fmt in refused_by:
        with pytest.raises(UnrenderableError) as info:
            formats.render(fmt, {name: value})
        assert name in str(info.value)
        assert info.value.name == name
        if value.strip():
            assert value not in str(info.value)
        return
    path = _write(tmp_path, fmt, {name: value})
    for parsed in _reads(fmt, path):
        assert parsed.get(name) == value


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_format_all_carriable_values_in_one_file(tmp_path: Path, fmt: str) -> None:
    values = {n: v for n, (v, refused) in HARD_VALUES.items() if fmt not in refused}
    path = _write(tmp_path, fmt, values)
    for parsed in _reads(fmt, path):
        assert {k: parsed.get(k) for k in values} == values


def test_dotenv_rust_reader_is_installed() -> None:
    """CI installs Debian's dotenv package; without it the dotenvy-family check is not proven."""
    if not readers.dotenv_rust_available():
        pytest.skip("dotenv-rust (Debian package 'dotenv') is not installed here")
    assert readers.dotenv_rust_available()


@pytest.mark.parametrize("name", sorted(formats.SHELL_RESERVED))
def test_shell_refuses_names_the_shell_owns(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnrenderableError, match=name):
        formats.render("shell", {name: "x"})
    # ... and they really cannot be set that way:
    path = tmp_path / "env.sh"
    path.write_text(f"export {name}='x'\n")
    assert readers.read_bash(path).get(name) != "x"


def test_shell_quote_matches_posix_rule() -> None:
    assert formats.shell_quote("it's") == "'it'\\''s'"


def test_files_carry_a_format_header_except_json() -> None:
    for fmt in ("dotenv", "shell", "docker"):
        assert formats.render(fmt, {"A": "1"}).startswith(f"# loader format={fmt} ")
    assert formats.render("json", {"A": "1"}).startswith("{")


def test_render_is_sorted_and_deterministic() -> None:
    a = formats.render("dotenv", {"B": "2", "A": "1"})
    b = formats.render("dotenv", {"A": "1", "B": "2"})
    assert a == b
    assert a.index("A=") < a.index("B=")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        formats.render("toml", {})


def test_docker_refuses_lines_past_go_scanner_limit(tmp_path: Path) -> None:
    with pytest.raises(UnrenderableError, match="BIG"):
        formats.render("docker", {"BIG": "x" * (64 * 1024)})
    ok = "x" * (64 * 1024 - 10)
    path = _write(tmp_path, "docker", {"OK": ok})
    assert readers.read_docker_env_file(path)["OK"] == ok
