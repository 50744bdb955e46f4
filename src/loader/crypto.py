"""AES-256-GCM envelope encryption (pure: no IO, no store).

* A **master key** (32 random bytes, from ``LOADER_MASTER_KEY_FILE``) wraps **data keys**.
* Each app/environment has a data key; it encrypts that environment's values.
* Every encryption uses a fresh random 96-bit nonce.
* The AAD binds a ciphertext to where it belongs: a data key to its app and environment, a value
  to its app, environment, name and version. A ciphertext copied to another row fails to open.
* Key ids are derived from the key (a keyed hash, not the key) and stored with each wrapped data
  key, so a rotation can tell which master key wrapped what.

Errors name key ids, never data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loader.errors import ConfigError, DecryptionError

KEY_BYTES = 32
NONCE_BYTES = 12


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_id(key: bytes) -> str:
    """A short, stable, non-reversible id for a master key."""
    return "k" + hashlib.sha256(b"loader-master-key-id\x00" + key).hexdigest()[:12]


def value_aad(app_id: int, env_id: int, name: str, version: int) -> bytes:
    return f"loader/v1/value/{app_id}/{env_id}/{name}/{version}".encode()


def data_key_aad(app_id: int, env_id: int) -> bytes:
    return f"loader/v1/data-key/{app_id}/{env_id}".encode()


@dataclass(frozen=True, slots=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes


def seal(key: bytes, plaintext: bytes, aad: bytes) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    return Sealed(nonce, AESGCM(key).encrypt(nonce, plaintext, aad))


def open_sealed(key: bytes, sealed: Sealed, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionError(f"{what} failed to decrypt (wrong key or tampered data)") from None


@dataclass(frozen=True, slots=True)
class MasterKey:
    id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class WrappedKey:
    master_key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class Keyring:
    """Master keys by id; the first is the primary that wraps new data keys."""

    keys: tuple[MasterKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("the master key file holds no key")

    @property
    def primary(self) -> MasterKey:
        return self.keys[0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k.id for k in self.keys)

    def get(self, master_key_id: str) -> MasterKey | None:
        for k in self.keys:
            if k.id == master_key_id:
                return k
        return None

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey:
        sealed = seal(self.primary.key, data_key, aad)
        return WrappedKey(self.primary.id, sealed.nonce, sealed.ciphertext)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        master = self.get(wrapped.master_key_id)
        if master is None:
            raise DecryptionError(
                f"data key is wrapped by master key {wrapped.master_key_id}, "
                "which is not in the master key file"
            )
        return open_sealed(
            master.key,
            Sealed(wrapped.nonce, wrapped.ciphertext),
            aad,
            f"data key wrapped by master key {wrapped.master_key_id}",
        )

    def with_primary(self, key: bytes) -> Keyring:
        """A keyring with ``key`` first (added, or moved to the front) and the others after."""
        new = MasterKey(key_id(key), key)
        return Keyring((new, *(k for k in self.keys if k.id != new.id)))

    def without(self, master_key_id: str) -> Keyring:
        return Keyring(tuple(k for k in self.keys if k.id != master_key_id))

    @classmethod
    def generate(cls) -> Keyring:
        key = new_key()
        return cls((MasterKey(key_id(key), key),))

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """One base64 key per line (``#`` comments allowed); an ``id:`` prefix is checked."""
        keys: list[MasterKey] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            declared, _, encoded = line.rpartition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(
                    f"master key file line {lineno}: not base64 (expected base64 of 32 bytes)"
                ) from None
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"master key file line {lineno}: key is {len(key)} bytes, expected {KEY_BYTES}"
                )
            kid = key_id(key)
            if declared and declared != kid:
                raise ConfigError(
                    f"master key file line {lineno}: id {declared!r} does not match its key"
                )
            if all(k.id != kid for k in keys):
                keys.append(MasterKey(kid, key))
        return cls(tuple(keys))

    def serialize(self) -> str:
        return "".join(f"{k.id}:{base64.b64encode(k.key).decode()}\n" for k in self.keys)
