"""Unit tables for the runner: options, the environment it builds, the masker."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.errors import NotFoundError, UnrenderableError, UsageError
from loader.runner.env import build_env, parse_names
from loader.runner.mask import MASK, Masker
from loader.runner.options import parse, wants_help
from loader.runner.supervise import exit_code, parse_signal
from loader.settingtypes import template_targets


@pytest.mark.parametrize(
    ("argv", "values", "switches", "command"),
    [
        (["--", "app", "-x"], {}, set(), ["app", "-x"]),
        (["app", "--watch"], {}, set(), ["app", "--watch"]),
        (["--from-file", "f", "--watch", "--", "a"], {"from_file": "f"}, {"watch"}, ["a"]),
        (["--from-file=f", "--only=A,B", "a"], {"from_file": "f", "only": "A,B"}, set(), ["a"]),
        (["--mask", "--grace", "2s", "--", "--x"], {"grace": "2s"}, {"mask"}, ["--x"]),
    ],
)
def test_options_parse(
    argv: list[str], values: dict[str, str], switches: set[str], command: list[str]
) -> None:
    opts = parse(argv, {})
    assert opts.values == values and opts.switches == switches and opts.command == command


def test_options_env_fills_and_flags_win() -> None:
    env = {
        "LOADER_FROM_FILE": "env.file",
        "LOADER_WATCH": "true",
        "LOADER_MASK": "no",
        "LOADER_PREFIX": "",
    }
    opts = parse(["--from-file", "flag.file", "--", "a"], env)
    assert opts.get("from_file") == "flag.file"
    assert opts.on("watch") and not opts.on("mask") and opts.get("prefix") is None


@pytest.mark.parametrize(
    "argv", [["--bogus", "a"], ["--from-file"], ["--watch=yes", "a"], [], ["--watch", "--"]]
)
def test_options_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(argv, {})


def test_options_template_repeats_and_the_variable_fills_in() -> None:
    argv = ["--template", "a.yaml:/s/a.yaml", "--template=b.json:/s/b.json", "--", "x"]
    assert parse(argv, {"LOADER_TEMPLATE": "c:/s/c"}).many("template") == [
        "a.yaml:/s/a.yaml",
        "b.json:/s/b.json",
    ]
    assert parse(["--", "x"], {"LOADER_TEMPLATE": "c:/s/c"}).many("template") == ["c:/s/c"]
    assert parse(["--", "x"], {}).many("template") == []


@pytest.mark.parametrize(
    ("given", "output", "expected"),
    [
        (["a.yaml:/s/a.yaml"], None, [("a.yaml", "/s/a.yaml")]),
        (["a:/s/a", "b:/s/b"], None, [("a", "/s/a"), ("b", "/s/b")]),
        ("a:/s/a, b:/s/b", None, [("a", "/s/a"), ("b", "/s/b")]),  # LOADER_TEMPLATE
        ("a.yaml", "/s/out.yaml", [("a.yaml", "/s/out.yaml")]),  # the old pair
        ([], None, []),
    ],
)
def test_template_targets(given: object, output: str | None, expected: object) -> None:
    assert template_targets(given, output) == expected


@pytest.mark.parametrize(
    ("given", "output", "message"),
    [
        (["a.yaml"], None, "needs a destination"),
        (["a:/s/x", "b:/s/x"], None, "same file"),
        (["a:/s/x", "b"], "/s/y", "goes with one"),
        (["a:/s/x"], "/s/y", "goes with one"),
        ([":/s/x"], None, "both paths"),
    ],
)
def test_template_targets_refusals(given: object, output: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        template_targets(given, output)


def test_wants_help() -> None:
    assert wants_help(["--watch", "--help"]) and wants_help(["-h"])
    assert not wants_help(["--", "app", "--help"]) and not wants_help(["app", "-h"])


def test_build_env_precedence_only_prefix_and_withheld_token() -> None:
    base = {"A": "outer", "PATH": "/bin", "LOADER_TOKEN": "lt_x_y"}
    secrets = {"A": "inner", "B": "b"}
    assert build_env(base, secrets) == {"A": "outer", "PATH": "/bin", "B": "b"}
    assert build_env(base, secrets, override=True)["A"] == "inner"
    assert build_env(base, secrets, only=frozenset({"B"})) == {
        "A": "outer",
        "PATH": "/bin",
        "B": "b",
    }
    assert build_env({}, secrets, prefix="APP_") == {"APP_A": "inner", "APP_B": "b"}
    with pytest.raises(NotFoundError, match="MISSING"):
        build_env(base, secrets, only=frozenset({"MISSING"}))
    with pytest.raises(UnrenderableError, match="Z"):
        build_env({}, {"Z": "a\x00b"})
    assert parse_names(" A, B ,,") == frozenset({"A", "B"}) and parse_names("") is None


@pytest.mark.parametrize(
    ("text", "number"), [("TERM", 15), ("sigterm", 15), ("SIGHUP", 1), ("9", 9)]
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


def test_parse_signal_refuses() -> None:
    with pytest.raises(UsageError):
        parse_signal("SIGNOPE")


def test_exit_code() -> None:
    assert (exit_code(0), exit_code(3), exit_code(-15), exit_code(-9)) == (0, 3, 143, 137)


SECRET = "s3cr3t/value+with spaces&more"


def _masked(masker: Masker, chunks: list[bytes]) -> bytes:
    return b"".join(masker.feed(c) for c in chunks) + masker.flush()


def test_mask_every_split_point_and_encoded_forms() -> None:
    raw = SECRET.encode()
    encoded = [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        quote(SECRET, safe="").encode(),
        quote_plus(SECRET).encode(),
    ]
    for form in encoded:
        text = b"before " + form + b" after\n"
        for cut in range(len(text) + 1):
            out = _masked(Masker([SECRET]), [text[:cut], text[cut:]])
            assert out == b"before " + MASK + b" after\n", (form, cut)


def test_mask_byte_by_byte_and_short_values_left_alone() -> None:
    text = f"x{SECRET}y abc\n".encode()
    out = _masked(Masker([SECRET, "abc"]), [bytes([b]) for b in text])
    assert out == b"x" + MASK + b"y abc\n"


def test_mask_passes_lines_on_at_once() -> None:
    masker = Masker([SECRET, "a longer secret value than the other one " * 3])
    assert masker.feed(b"a full line\n") == b"a full line\n"
    assert masker.feed(f"the value: {SECRET}\n".encode()) == b"the value: " + MASK + b"\n"
    masker = Masker([SECRET])
    assert masker.feed(b"partial s3") == b"partial "  # "s3" may begin the secret: held
    assert masker.feed(b"x") == b"s3x"


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=4, max_size=20),
    st.text(max_size=40),
    st.text(max_size=40),
    st.lists(st.integers(min_value=1, max_value=7), max_size=10),
)
def test_mask_property_never_leaks(secret: str, before: str, after: str, sizes: list[int]) -> None:
    data = (before + secret + after).encode()
    chunks, i = [], 0
    for size in sizes:
        chunks.append(data[i : i + size])
        i += size
    chunks.append(data[i:])
    out = _masked(Masker([secret]), chunks)
    assert secret.encode() not in out
