"""The renderers' own rules (pure). Reading every format back with every real reader is the
reader matrix's job (tests/integration/test_reader_matrix.py, over tests/readers/values.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loader import formats
from loader.errors import UnrenderableError
from tests import readers
from tests.readers.values import VALUES


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain-1.2/x+y=", "A=plain-1.2/x+y="),
        ("", "A=''"),
        ("two words", "A='two words'"),
        ('say "hi"', """A='say "hi"'"""),
        ("C:\\temp", "A='C:\\temp'"),
        ("$HOME", "A='$HOME'"),
        ("it's", 'A="it\'s"'),
        ("line1\nline2", 'A="line1\\nline2"'),
    ],
)
def test_dotenv_picks_the_first_spelling_every_reader_reads_the_same(value: str, line: str) -> None:
    assert formats.render("dotenv", {"A": value}) == formats.header("dotenv") + line + "\n"


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_refusal_names_every_offending_secret_once_and_no_value(fmt: str) -> None:
    values = {name: value for name, (value, _) in VALUES.items()}
    refused = sorted(name for name, (_, by) in VALUES.items() if fmt in by)
    if not refused:
        assert formats.render(fmt, values)
        return
    with pytest.raises(UnrenderableError) as info:
        formats.render(fmt, values)
    message = str(info.value)
    assert info.value.names == tuple(refused)
    assert info.value.name == refused[0]
    assert "\n" not in message
    for name in VALUES:
        assert (f" {name} (" in message) == (name in refused)
    for value, _ in VALUES.values():
        if len(value) >= 4:
            assert value not in message
    assert formats.refusals(fmt, values) and len(formats.refusals(fmt, values)) == len(refused)


def test_dotenv_refusal_names_the_reader_and_the_formats_that_carry_it() -> None:
    with pytest.raises(UnrenderableError) as info:
        formats.render("dotenv", {"OK": "x", "KEY": "ends\\", "TOKEN": "${HOME}"})
    assert str(info.value) == (
        "cannot write dotenv: 2 secrets KEY (it has a trailing backslash; python-dotenv, "
        "npm dotenv would misread it), TOKEN (it has a ${...} reference; python-dotenv would "
        "misread it); the shell, docker or json format carries them"
    )


def test_dotenv_expand_refuses_any_dollar_and_suggests_dotenv() -> None:
    with pytest.raises(
        UnrenderableError, match=r"P \(it has a \$.*dotenv-expand would.*the dotenv,"
    ):
        formats.render("dotenv-expand", {"P": "pa$$word"})
    assert formats.render("dotenv", {"P": "pa$$word"}).endswith("P='pa$$word'\n")


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


def test_docker_line_limit_is_the_go_scanners(tmp_path: Path) -> None:
    """The longest line docker reads (65535 bytes before the newline) is written; one byte more
    is refused by the writer, as docker's scanner would refuse it (the oracle)."""
    longest = "x" * (64 * 1024 - 1 - len("OK="))
    path = tmp_path / "env"
    path.write_text(formats.render("docker", {"OK": longest}))
    assert readers.read_docker_env_file(path)["OK"] == longest
    with pytest.raises(UnrenderableError, match="BIG"):
        formats.render("docker", {"BIG": longest + "x"})
    path.write_text(f"OK={longest}x\n")
    with pytest.raises(ValueError, match="token too long"):
        readers.read_docker_env_file(path)


@pytest.mark.parametrize("fmt", ["dotenv", "dotenv-expand"])
def test_dotenv_shortcuts_agree_with_the_full_table(fmt: str) -> None:
    from tests.readers.matrix import fuzz_values

    readers = formats.READERS[fmt]
    for value in [v for v, _ in VALUES.values()] + fuzz_values(2000, seed=7):
        try:
            expected: str | None = formats.spell_dotenv("A", value, readers)
        except Exception:
            expected = None
        try:
            got: str | None = formats.dotenv_value("A", value, readers)
        except Exception:
            got = None
        assert got == expected, value
