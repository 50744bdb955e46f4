"""Master key rotation, online.

1. The new key goes to the front of the key file (atomic rename): every store process picks it
   up the first time it meets a data key wrapped by it, and wraps new data keys with it.
2. Every data key is re-wrapped under the new key, one compare-and-set update each: readers
   keep working throughout (the plaintext data key does not change; only its wrapping).
3. With ``reencrypt``, each environment also gets a fresh data key and its values (every kept
   version) are re-encrypted, one transaction per environment.
4. The report says which old master keys wrap nothing any more: those can be removed from the
   key file (``loader store remove-key``).
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loader import crypto
from loader.crypto import Keyring, Sealed
from loader.errors import ConfigError, NotFoundError
from loader.fsio import atomic_write
from loader.store.keyfile import StaticKeyring, read_key_file, write_key_file
from loader.store.models import DataKeyRecord
from loader.store.permissions import check_key_file
from loader.store.repository import Repository
from loader.store.service import StoreService


@dataclass
class RotationReport:
    new_key_id: str
    rewrapped: int = 0
    reencrypted_environments: int = 0
    reencrypted_values: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    removable: list[str] = field(default_factory=list)


def read_or_create_new_key(path: Path) -> bytes:
    """The key in ``path`` (base64 of 32 bytes), or a fresh one written there 0600."""
    if not path.exists():
        key = crypto.new_key()
        atomic_write(path, base64.b64encode(key) + b"\n", mode=0o600)
        return key
    check_key_file(path, path.stat())
    text = path.read_text().strip().rpartition(":")[2]
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: not base64 (expected base64 of 32 random bytes)") from None
    if len(key) != crypto.KEY_BYTES:
        raise ConfigError(f"{path}: the key is {len(key)} bytes, expected {crypto.KEY_BYTES}")
    return key


async def key_usage(repo: Repository) -> dict[str, int]:
    return dict(Counter(k.wrapped.master_key_id for k in await repo.list_data_keys()))


async def rotate(
    repo: Repository, key_file: Path, new_key_file: Path, *, reencrypt: bool = False
) -> RotationReport:
    old = read_key_file(key_file)
    rotated = old.with_primary(read_or_create_new_key(new_key_file))
    if rotated.ids != old.ids:
        write_key_file(key_file, rotated)
    report = RotationReport(rotated.primary.id)
    service = StoreService(repo, StaticKeyring(rotated))
    for record in await repo.list_data_keys():
        if record.wrapped.master_key_id == rotated.primary.id:
            continue
        aad = crypto.data_key_aad(record.app_id, record.env_id)
        plain = service.data_key(record)
        if await repo.rewrap_data_key(
            record.id, record.wrapped.master_key_id, rotated.wrap(plain, aad)
        ):
            report.rewrapped += 1
    if reencrypt:
        await _reencrypt(repo, service, rotated, report)
    report.usage = await key_usage(repo)
    report.removable = [k for k in rotated.ids[1:] if report.usage.get(k, 0) == 0]
    return report


async def _reencrypt(
    repo: Repository, service: StoreService, keyring: Keyring, report: RotationReport
) -> None:
    def reseal(
        old: DataKeyRecord, new: DataKeyRecord, name: str, version: int, sealed: Sealed
    ) -> Sealed:
        aad = crypto.value_aad(old.app_id, old.env_id, name, version)
        what = f"value of {name} v{version} (data key {old.id})"
        plain = crypto.open_sealed(service.data_key(old), sealed, aad, what)
        return crypto.seal(service.data_key(new), plain, aad)

    for env_id in sorted({k.env_id for k in await repo.list_data_keys()}):
        report.reencrypted_values += await repo.reencrypt_environment(
            env_id, service.new_data_key, reseal
        )
        report.reencrypted_environments += 1


async def remove_key(repo: Repository, key_file: Path, key_id: str) -> None:
    keyring = read_key_file(key_file)
    if keyring.get(key_id) is None:
        raise NotFoundError(f"master key {key_id} is not in {key_file}")
    if keyring.primary.id == key_id:
        raise ConfigError(f"{key_id} is the primary key; rotate to a new key first")
    used = (await key_usage(repo)).get(key_id, 0)
    if used:
        raise ConfigError(
            f"master key {key_id} still wraps {used} data key(s); run `loader store rotate-key` "
            "again before removing it"
        )
    write_key_file(key_file, keyring.without(key_id))
