"""Properties over generated inputs (hypothesis), checked against the real readers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader import crypto, formats, template
from loader.errors import DecryptionError, UnrenderableError
from tests import readers
from tests.data import EXAMPLES
from tests.unit.test_template import _expected

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
VALUES = st.text(max_size=80)
ENV = st.dictionaries(NAMES, VALUES, min_size=1, max_size=5)
SUBPROCESS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _render_or_refusal(fmt: str, values: dict[str, str]) -> str | None:
    """The file, or None after checking the refusal names a secret and shows no value."""
    try:
        return formats.render(fmt, values)
    except UnrenderableError as exc:
        # the message is made of names and fixed reasons only: no value can be in it
        found = formats.refusals(fmt, values)
        assert exc.names == tuple(r.name for r in found) and set(exc.names) <= set(values)
        assert all(r.why in formats.REASONS for r in found)
        assert str(exc).startswith(f"cannot write {fmt}: ")
        return None


def _file(text: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=".env")
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name)


@settings(max_examples=400, deadline=None)
@given(ENV)
def test_dotenv_round_trips_through_python_dotenv(values: dict[str, str]) -> None:
    text = _render_or_refusal("dotenv", values)
    if text is not None:
        path = _file(text)
        assert readers.read_python_dotenv(path) == values
        path.unlink()


@SUBPROCESS
@given(ENV)
def test_dotenv_round_trips_through_dotenv_rust(values: dict[str, str]) -> None:
    text = _render_or_refusal("dotenv", values)
    if text is not None:
        path = _file(text)
        got = readers.read_dotenv_rust(path)
        path.unlink()
        assert {k: got.get(k) for k in values} == values


@SUBPROCESS
@given(ENV)
def test_shell_round_trips_through_bash(values: dict[str, str]) -> None:
    text = _render_or_refusal("shell", values)
    if text is not None:
        path = _file(text)
        got = readers.read_bash(path)
        path.unlink()
        assert {k: got.get(k) for k in values} == values
    else:  # the only things shell refuses: NUL, and the names the shell owns
        assert any("\x00" in v for v in values.values()) or set(values) & formats.SHELL_RESERVED


@settings(max_examples=400, deadline=None)
@given(ENV)
def test_docker_and_json_round_trip(values: dict[str, str]) -> None:
    for fmt, read in (("docker", readers.read_docker_env_file), ("json", readers.read_json)):
        text = _render_or_refusal(fmt, values)
        if text is not None:
            path = _file(text)
            assert read(path) == values
            path.unlink()
    assert _render_or_refusal("json", values) is not None  # JSON carries anything


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(EXAMPLES), st.lists(VALUES, min_size=1, max_size=3))
def test_template_keeps_yaml_valid_with_exact_values(path: Path, pool: list[str]) -> None:
    text = path.read_text(encoding="utf-8")
    names = template.references(text)
    values = {name: pool[i % len(pool)] for i, name in enumerate(names)}
    try:
        rendered = template.render(text, values, "yaml")
    except UnrenderableError as exc:
        # only spicepod values that look like ${...} references are refused
        assert exc.name in values and "${" in values[exc.name]
        return
    assert yaml.safe_load(rendered.text) == _expected(yaml.safe_load(text), values)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=512),
    st.integers(1, 10**6),
    st.integers(1, 10**6),
    NAMES,
    st.integers(1, 1000),
)
def test_seal_open_round_trip_and_aad_binding(
    plaintext: bytes, app: int, env: int, name: str, version: int
) -> None:
    key = crypto.new_key()
    aad = crypto.value_aad(app, env, name, version)
    sealed = crypto.seal(key, plaintext, aad)
    assert crypto.open_sealed(key, sealed, aad, "v") == plaintext
    for other in (
        crypto.value_aad(app + 1, env, name, version),
        crypto.value_aad(app, env + 1, name, version),
        crypto.value_aad(app, env, name + "X", version),
        crypto.value_aad(app, env, name, version + 1),
    ):
        with pytest.raises(DecryptionError):
            crypto.open_sealed(key, sealed, other, "v")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_flipped_bit_fails(plaintext: bytes, data: st.DataObject) -> None:
    key = crypto.new_key()
    sealed = crypto.seal(key, plaintext, b"aad")
    blob = bytearray(sealed.nonce + sealed.ciphertext)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    tampered = crypto.Sealed(bytes(blob[:12]), bytes(blob[12:]))
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, tampered, b"aad", "v")
