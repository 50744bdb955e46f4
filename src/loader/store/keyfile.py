"""The master key file: created 0600, read at start, re-read when it changes (rotation)."""

from __future__ import annotations

from pathlib import Path

from loader.crypto import Keyring
from loader.errors import ConfigError
from loader.fsio import atomic_write
from loader.store.permissions import check_key_file


def create_key_file(path: Path) -> Keyring:
    keyring = Keyring.generate()
    write_key_file(path, keyring)
    return keyring


def write_key_file(path: Path, keyring: Keyring) -> None:
    atomic_write(path, keyring.serialize().encode(), mode=0o600)


def read_key_file(path: Path) -> Keyring:
    try:
        info = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"master key file {path} does not exist (create one with `loader store init`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read master key file {path}: {exc.strerror}") from None
    check_key_file(path, info)
    return Keyring.parse(text)


class KeyringFile:
    """The keyring, reloaded when its file changes (``rotate-key`` adds keys while we serve)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._current_stamp()
        self._keyring = read_key_file(path)

    def _current_stamp(self) -> tuple[int, int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the keyring did."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False
        self._keyring = read_key_file(self.path)
        self._stamp = stamp
        return True


class StaticKeyring:
    """A keyring that never changes (tests, ``loader dev``)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def refresh(self) -> bool:
        return False
