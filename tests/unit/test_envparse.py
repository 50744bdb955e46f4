"""Reading env files back: loader's own formats exactly, anything else via python-dotenv."""

from __future__ import annotations

from collections.abc import Callable
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


def _bindings(text: str, interpolate: bool = True) -> list[tuple[int, str | None, str | None]]:
    return [
        (b.line, b.name, b.value if b.error is None else f"! {b.error}")
        for b in envparse.read_dotenv(text, interpolate=interpolate)
    ]


@pytest.mark.parametrize(
    ("text", "interpolate", "bindings"),
    [
        ("A=1\n", True, [(1, "A", "1")]),
        ("# c\n\nA=1\n  # indented\nB='two'\n", True, [(3, "A", "1"), (5, "B", "two")]),
        ("export A=x\n", True, [(1, "A", "x")]),
        ('A=1\nB="${A}-2"\nC=${A:-d}\n', True, [(1, "A", "1"), (2, "B", "1-2"), (3, "C", "1")]),
        ("A=${NOPE:-fallback}\n", True, [(1, "A", "fallback")]),
        ("A=${B}\nB=1\n", True, [(1, "A", "! a ${...} reference names no variable defined above "
                                    "it (--literal keeps ${...} as written)"), (2, "B", "1")]),
        ("A=${B}\n", False, [(1, "A", "${B}")]),
        ("A='unterminated\nB=2\n", True, [(1, None, "! cannot parse this line"), (2, "B", "2")]),
        ("NAME_ONLY\nB=2\n", True, [(1, "NAME_ONLY", "! no '=' (a name without a value)"),
                                    (2, "B", "2")]),
        ('A="multi\nline"\nB=3\n', True, [(1, "A", "multi\nline"), (3, "B", "3")]),
        ("X=1\n\n\nA='x\n", True, [(1, "X", "1"), (4, None, "! cannot parse this line")]),
        ("\n  \nA=1\n", True, [(3, "A", "1")]),  # the line of the binding, not of the gap
    ],
)  # fmt: skip
def test_read_dotenv_gives_every_line_bad_ones_as_data(
    text: str, interpolate: bool, bindings: list[tuple[int, str | None, str | None]]
) -> None:
    assert _bindings(text, interpolate) == bindings


@pytest.mark.parametrize(
    ("text", "valid_name", "problem"),
    [
        ("A='x\n", None, "line 1: cannot parse this line"),
        ("A=1\nB\nC='x\n", None, "line 2: no '=' (a name without a value); line 3: cannot parse"),
        ("my.var=1\n", lambda n: n.isidentifier(), "line 1: not a valid secret name"),
        ("\n".join(f"N{i}" for i in range(12)), None, "line 1: no '='"),
    ],
)
def test_dotenv_values_refuses_a_file_with_any_bad_line(
    text: str, valid_name: Callable[[str], bool] | None, problem: str
) -> None:
    """`loader run --from-file` and `loader secrets import` read through this one function."""
    with pytest.raises(envparse.EnvParseError) as info:
        envparse.dotenv_values(text, valid_name=valid_name)
    assert str(info.value).startswith(problem)
    assert str(info.value).count("line ") <= envparse.MAX_PROBLEMS


def test_dotenv_values_never_shows_a_value() -> None:
    with pytest.raises(envparse.EnvParseError) as info:
        envparse.dotenv_values("TOKEN='hunter2-secret\nB=${SECRET_REF}\n")
    assert "hunter2" not in str(info.value)
    assert "SECRET_REF" not in str(info.value) and "TOKEN" not in str(info.value)
