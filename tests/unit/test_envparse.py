"""Reading env files back: loader's own formats exactly, anything else via python-dotenv."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader import envparse, formats
from loader.errors import UnrenderableError
from tests import readers
from tests.readers.values import VALUES


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_parse_reads_back_every_carriable_hard_value(fmt: str) -> None:
    values = {n: v for n, (v, refused) in VALUES.items() if fmt not in refused}
    text = formats.render(fmt, values)
    assert envparse.detect(text) == fmt
    assert envparse.parse(text) == values
    assert envparse.parse(text, fmt) == values


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("# loader format=shell (x)\n", "shell"),
        ('{"A": "1"}', "json"),
        ("A=1\n", "dotenv"),
        ("# loader format=toml\nA=1", "dotenv"),
        ("  {\n}", "json"),
        ("", "dotenv"),
    ],
)
def test_detect(text: str, fmt: str) -> None:
    assert envparse.detect(text) == fmt


def test_hand_written_dotenv_goes_to_python_dotenv(tmp_path: Path) -> None:
    text = "# mine\nexport A=plain\nB='single'\nC=\"dq ${A}\"\nD=x # comment\n"
    path = tmp_path / "x.env"
    path.write_text(text)
    assert envparse.parse(text) == readers.read_python_dotenv(path)
    assert envparse.parse(text)["C"] == "dq plain"


def test_edited_agent_file_falls_back_to_python_dotenv() -> None:
    text = formats.render("dotenv", {"A": "1"}) + "B=unquoted value\n"
    assert envparse.parse(text) == {"A": "1", "B": "unquoted value"}


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("A='unterminated\n", "dotenv"),
        ("export A=bare\n", "shell"),
        ("not a var\n", "docker"),
        ("[1, 2]", "json"),
        ('{"A": 1}', "json"),
    ],
)
def test_bad_files_are_errors_naming_a_line_not_a_value(text: str, fmt: str) -> None:
    with pytest.raises(envparse.EnvParseError) as info:
        envparse.parse(text, fmt)
    for token in ("unterminated", "bare"):
        assert token not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
        st.text(max_size=60),
        max_size=6,
    )
)
def test_round_trip_property(values: dict[str, str]) -> None:
    for fmt in formats.FORMATS:
        try:
            text = formats.render(fmt, values)
        except UnrenderableError:
            continue
        assert envparse.parse(text) == values, fmt
