"""The start-up check that the master key file matches the data: every master key id that
wraps a data key is in the file, and each one really unwraps (a key file for another store
would otherwise serve "ready" and then fail every read)."""

from __future__ import annotations

from pathlib import Path

from loader import crypto
from loader.crypto import Keyring
from loader.errors import ConfigError, DecryptionError
from loader.store.repository import Repository


async def check_master_keys(repo: Repository, keyring: Keyring, key_file: Path | None) -> None:
    """Raise :class:`ConfigError` (exit 78) unless ``keyring`` opens every data key's wrapping.

    One unwrap per master key id in use; names key ids, never key material."""
    where = f"the master key file {key_file}" if key_file is not None else "the master key"
    records = await repo.list_data_keys()
    in_use = sorted({r.wrapped.master_key_id for r in records})
    missing = [k for k in in_use if keyring.get(k) is None]
    if missing:
        raise ConfigError(
            f"{where} does not hold the master key(s) the stored data keys are wrapped with "
            f"({', '.join(missing)}; it holds {', '.join(keyring.ids) or 'none'}): "
            "is it this store's key file?"
        )
    tried: set[str] = set()
    for record in records:
        key_id = record.wrapped.master_key_id
        if key_id in tried:
            continue
        tried.add(key_id)
        try:
            keyring.unwrap(record.wrapped, crypto.data_key_aad(record.app_id, record.env_id))
        except DecryptionError:
            raise ConfigError(
                f"{where}: master key {key_id} does not unwrap data key {record.id} "
                "(the key file or the database has been altered)"
            ) from None
