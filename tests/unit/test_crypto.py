"""AES-256-GCM envelope: round trips, tamper and AAD binding, keyring parsing."""

from __future__ import annotations

import base64

import pytest

from loader import crypto
from loader.errors import ConfigError, DecryptionError


def test_seal_open_round_trip() -> None:
    key = crypto.new_key()
    aad = crypto.value_aad(1, 2, "A", 3)
    sealed = crypto.seal(key, b"canary-value", aad)
    assert b"canary-value" not in sealed.ciphertext
    assert len(sealed.nonce) == 12
    assert crypto.open_sealed(key, sealed, aad, "x") == b"canary-value"


def test_nonces_are_fresh() -> None:
    key = crypto.new_key()
    nonces = {crypto.seal(key, b"v", b"a").nonce for _ in range(200)}
    assert len(nonces) == 200


@pytest.mark.parametrize(
    "other",
    [
        crypto.value_aad(9, 2, "A", 3),
        crypto.value_aad(1, 9, "A", 3),
        crypto.value_aad(1, 2, "B", 3),
        crypto.value_aad(1, 2, "A", 4),
    ],
    ids=["app", "environment", "name", "version"],
)
def test_ciphertext_bound_to_its_row(other: bytes) -> None:
    key = crypto.new_key()
    sealed = crypto.seal(key, b"secret", crypto.value_aad(1, 2, "A", 3))
    with pytest.raises(DecryptionError) as info:
        crypto.open_sealed(key, sealed, other, "value of A")
    assert "secret" not in str(info.value).replace("value of A", "")


@pytest.mark.parametrize("where", ["nonce", "ciphertext"])
def test_flipped_bit_fails(where: str) -> None:
    key = crypto.new_key()
    aad = b"aad"
    sealed = crypto.seal(key, b"payload", aad)
    blob = bytearray(getattr(sealed, where))
    blob[len(blob) // 2] ^= 0x01
    tampered = (
        crypto.Sealed(bytes(blob), sealed.ciphertext)
        if where == "nonce"
        else crypto.Sealed(sealed.nonce, bytes(blob))
    )
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, tampered, aad, "x")


def test_keyring_wrap_unwrap_and_unknown_key_names_the_id() -> None:
    ring = crypto.Keyring.generate()
    data_key = crypto.new_key()
    aad = crypto.data_key_aad(1, 1)
    wrapped = ring.wrap(data_key, aad)
    assert wrapped.master_key_id == ring.primary.id
    assert ring.unwrap(wrapped, aad) == data_key
    other = crypto.Keyring.generate()
    with pytest.raises(DecryptionError, match=ring.primary.id):
        other.unwrap(wrapped, aad)


def test_keyring_rotation_order_and_serialisation() -> None:
    ring = crypto.Keyring.generate()
    new = crypto.new_key()
    rotated = ring.with_primary(new)
    assert rotated.primary.id == crypto.key_id(new)
    assert rotated.ids[1] == ring.primary.id
    parsed = crypto.Keyring.parse(rotated.serialize())
    assert parsed.ids == rotated.ids
    assert parsed.without(ring.primary.id).ids == (rotated.primary.id,)


def test_keyring_parses_a_bare_base64_key() -> None:
    key = crypto.new_key()
    ring = crypto.Keyring.parse("# comment\n" + base64.b64encode(key).decode() + "\n")
    assert ring.primary.key == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key"),
        ("not base64!!\n", "not base64"),
        (base64.b64encode(b"short").decode(), "expected 32"),
        ("kdeadbeef0000:" + base64.b64encode(b"k" * 32).decode(), "does not match"),
    ],
)
def test_keyring_bad_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        crypto.Keyring.parse(text)


def test_key_repr_hides_material() -> None:
    ring = crypto.Keyring.generate()
    assert base64.b64encode(ring.primary.key).decode() not in repr(ring)
    assert repr(ring.primary.key) not in repr(ring)
