"""Row -> record mappers both repositories share (sqlite3.Row and asyncpg.Record both index by
column name; SQLite hands timestamps back as ISO text, PostgreSQL as datetimes), and the
encoding of a token's scopes in its row."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from loader.consumer import Report
from loader.crypto import WrappedKey
from loader.store.fleet import Consumer, Slot
from loader.store.models import (
    App,
    AuditEvent,
    DataKeyRecord,
    Environment,
    SecretMeta,
    TokenRecord,
    TrustPolicy,
    parse_iso,
)

Row = Any


def encode_scopes(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


@functools.lru_cache(maxsize=256)
def decode_scopes(text: str) -> frozenset[str]:
    """Cached: a handful of distinct scope sets serve every request (and every held watcher)."""
    return frozenset(text.split())


def ts(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else parse_iso(value)


def opt_ts(value: str | datetime | None) -> datetime | None:
    return ts(value) if value else None


def secret_record(row: Row) -> SecretMeta:
    return SecretMeta(
        id=row["id"],
        env_id=row["env_id"],
        name=row["name"],
        description=row["description"],
        version=row["version"],
        modified_revision=row["modified_revision"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
    )


def env_record(row: Row) -> Environment:
    return Environment(
        id=row["id"],
        app_id=row["app_id"],
        name=row["name"],
        revision=row["revision"],
        created_at=ts(row["created_at"]),
    )


def app_record(row: Row) -> App:
    return App(id=row["id"], name=row["name"], created_at=ts(row["created_at"]))


def data_key_record(row: Row) -> DataKeyRecord:
    return DataKeyRecord(
        id=row["id"],
        app_id=row["app_id"],
        env_id=row["env_id"],
        wrapped=WrappedKey(row["master_key_id"], row["nonce"], row["wrapped"]),
    )


def token_record(row: Row) -> TokenRecord:
    envs = row["environments"]
    return TokenRecord(
        id=row["id"],
        kind=row["kind"],
        digest=row["digest"],
        scopes=decode_scopes(row["scopes"]),
        app_id=row["app_id"],
        environments=tuple(envs.split(",")) if envs is not None else None,
        created_at=ts(row["created_at"]),
        expires_at=opt_ts(row["expires_at"]),
        revoked_at=opt_ts(row["revoked_at"]),
        description=row["description"],
    )


def trust_record(row: Row) -> TrustPolicy:
    envs = row["environments"]
    return TrustPolicy(
        id=row["id"],
        issuer=row["issuer"],
        audience=row["audience"],
        conditions=tuple(sorted(json.loads(row["conditions"]).items())),
        scopes=decode_scopes(row["scopes"]),
        app_id=row["app_id"],
        environments=tuple(envs.split(",")) if envs is not None else None,
        ttl=int(row["ttl"]),
        created_at=ts(row["created_at"]),
        jwks_url=row["jwks_url"],
        jwks_file=row["jwks_file"],
        description=row["description"],
        deleted_at=opt_ts(row["deleted_at"]),
    )


def audit_record(row: Row) -> AuditEvent:
    names = row["names"]
    return AuditEvent(
        id=row["id"],
        at=ts(row["at"]),
        token_id=row["token_id"],
        app_id=row["app_id"],
        environment=row["environment"],
        names=tuple(names.split(",")) if names else (),
        action=row["action"],
        outcome=row["outcome"],
        client=row["client"],
        count=row["count"],
        subject=row["subject"],
        reason=row["reason"],
    )


def consumer_record(row: Row) -> Consumer:
    report = Report(
        row["consumer_id"],
        row["kind"],
        row["host"],
        row["version"],
        row["rendered"],
        row["running"],
        row["health"],
        row["failed"],
        row["seq"],
    )
    return Consumer(row["env_id"], report, ts(row["last_seen"]))


def slot_record(row: Row) -> Slot:
    return Slot(row["consumer_id"], row["revision"], ts(row["granted_at"]), ts(row["expires_at"]))
