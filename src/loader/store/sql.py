"""The SQL both repositories send, written once.

Statements use ``?`` placeholders, as SQLite takes them; :func:`numbered` turns them into
PostgreSQL's ``$1``, ``$2``, ... (no ``?`` appears in this SQL but as a placeholder). What only
one backend can say stays in its module: SQLite's group-commit write of a secret, PostgreSQL's
one-statement write, its row locks (``FOR UPDATE``) and its ``NOTIFY``.

The two keep timestamps differently (SQLite as ISO text, PostgreSQL as ``timestamptz``): the
parameter builders take the repository's ``ts`` (:func:`loader.store.models.iso`, or nothing).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from loader.store.fleet import Consumer
from loader.store.models import AuditEvent, AuditQuery, TokenRecord, TrustPolicy
from loader.store.records import encode_scopes

Ts = Callable[[datetime], Any]


@functools.cache
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's numbered ones (cached: the same few texts recur)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


# -- apps and environments -------------------------------------------------------------------

INSERT_APP = (
    "INSERT INTO apps (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING RETURNING id"
)
LIST_APPS = "SELECT * FROM apps ORDER BY id"
GET_APP = "SELECT * FROM apps WHERE id = ?"
APP_EXISTS = "SELECT 1 FROM apps WHERE id = ?"
DELETE_APP = "DELETE FROM apps WHERE id = ?"
ENVIRONMENT_IDS_OF_APP = "SELECT id FROM environments WHERE app_id = ? ORDER BY id"
INSERT_ENVIRONMENT = (
    "INSERT INTO environments (app_id, name, revision, created_at) VALUES (?, ?, 0, ?) "
    "ON CONFLICT (app_id, name) DO NOTHING RETURNING id"
)
LIST_ENVIRONMENTS = "SELECT * FROM environments WHERE app_id = ? ORDER BY id"
GET_ENVIRONMENT = "SELECT * FROM environments WHERE app_id = ? AND name = ?"
ENVIRONMENT_ID = "SELECT id FROM environments WHERE app_id = ? AND name = ?"
ENVIRONMENT_BY_ID = "SELECT * FROM environments WHERE id = ?"
DELETE_ENVIRONMENT = "DELETE FROM environments WHERE id = ?"

# -- secrets and versions ----------------------------------------------------------------------

SECRET_COLUMNS = "id, env_id, name, description, version, modified_revision, created_at, updated_at"
COUNT_SECRETS = "SELECT count(*) FROM secrets WHERE env_id = ?"
LIST_SECRETS = (
    f"SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = ? "  # noqa: S608
    "ORDER BY name LIMIT ? OFFSET ?"
)
GET_SECRET = f"SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = ? AND name = ?"  # noqa: S608
SECRET_ID = "SELECT id FROM secrets WHERE env_id = ? AND name = ?"
DELETE_SECRET = "DELETE FROM secrets WHERE id = ?"
# Every secret of an environment with its current value (still sealed); filters are appended.
CURRENT_VALUES = (
    "SELECT s.name, s.version, v.data_key_id, v.nonce, v.ciphertext FROM secrets s "
    "LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version "
    "WHERE s.env_id = ?"
)
LIST_VERSIONS = (
    "SELECT version, created_at, actor, ciphertext IS NOT NULL AS kept "
    "FROM secret_versions WHERE secret_id = ? ORDER BY version DESC"
)
GET_VERSION = (
    "SELECT v.data_key_id, v.nonce, v.ciphertext FROM secret_versions v "
    "JOIN secrets s ON s.id = v.secret_id "
    "WHERE s.env_id = ? AND s.name = ? AND v.version = ? AND v.ciphertext IS NOT NULL"
)
SEALED_VALUES_OF_ENVIRONMENT = (
    "SELECT v.secret_id, v.version, v.data_key_id, v.nonce, v.ciphertext, s.name "
    "FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
    "WHERE s.env_id = ? AND v.ciphertext IS NOT NULL"
)
RESEAL_VALUE = (
    "UPDATE secret_versions SET data_key_id = ?, nonce = ?, ciphertext = ? "
    "WHERE secret_id = ? AND version = ?"
)

# -- data keys ---------------------------------------------------------------------------------

DATA_KEY_SELECT = (
    "SELECT k.id, e.app_id, k.env_id, k.master_key_id, k.nonce, k.wrapped "
    "FROM data_keys k JOIN environments e ON e.id = k.env_id"
)
DATA_KEY_BY_ID = f"{DATA_KEY_SELECT} WHERE k.id = ?"
DATA_KEYS = f"{DATA_KEY_SELECT} ORDER BY k.id"
DATA_KEYS_OF_ENVIRONMENT = f"{DATA_KEY_SELECT} WHERE k.env_id = ?"
# One data key per master key in use (the key self-test of /v1/ready).
DATA_KEY_PER_MASTER_KEY = (
    f"{DATA_KEY_SELECT} WHERE k.id IN "  # noqa: S608
    "(SELECT min(id) FROM data_keys GROUP BY master_key_id) ORDER BY k.id"
)
INSERT_DATA_KEY = (
    "INSERT INTO data_keys (env_id, master_key_id, nonce, wrapped, created_at) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id"
)
SET_DATA_KEY = "UPDATE environments SET data_key_id = ? WHERE id = ?"
REWRAP_DATA_KEY = (
    "UPDATE data_keys SET master_key_id = ?, nonce = ?, wrapped = ? "
    "WHERE id = ? AND master_key_id = ?"
)
DROP_OTHER_DATA_KEYS = "DELETE FROM data_keys WHERE env_id = ? AND id != ?"

# -- tokens ------------------------------------------------------------------------------------

INSERT_TOKEN = (
    "INSERT INTO tokens (id, kind, digest, scopes, app_id, environments, description, "
    "created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
REVOKE_TOKEN = "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id"
GET_TOKEN = "SELECT * FROM tokens WHERE id = ?"
LIST_TOKENS = "SELECT * FROM tokens ORDER BY created_at"
COUNT_TOKENS = "SELECT count(*) FROM tokens"
# Tokens and clients revoked, and trust policies deleted, since a time (takes it twice).
REVOKED_SINCE = (
    "SELECT id, revoked_at FROM tokens WHERE revoked_at >= ? "
    "UNION ALL SELECT id, deleted_at FROM trust_policies WHERE deleted_at >= ?"
)


def token_params(record: TokenRecord, ts: Ts) -> tuple[Any, ...]:
    environments = ",".join(record.environments) if record.environments is not None else None
    expires = ts(record.expires_at) if record.expires_at else None
    return (
        record.id,
        record.kind,
        record.digest,
        encode_scopes(record.scopes),
        record.app_id,
        environments,
        record.description,
        ts(record.created_at),
        expires,
    )


# -- trust policies (workload identity) -------------------------------------------------------

INSERT_TRUST_POLICY = (
    "INSERT INTO trust_policies (id, issuer, jwks_url, jwks_file, audience, conditions, scopes, "
    "app_id, environments, ttl, description, created_at, deleted_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
GET_TRUST_POLICY = "SELECT * FROM trust_policies WHERE id = ? AND deleted_at IS NULL"
LIST_TRUST_POLICIES = "SELECT * FROM trust_policies WHERE deleted_at IS NULL ORDER BY created_at"
TRUST_POLICIES_OF_ISSUER = (
    "SELECT * FROM trust_policies WHERE issuer = ? AND deleted_at IS NULL ORDER BY created_at"
)
DELETE_TRUST_POLICY = (
    "UPDATE trust_policies SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL RETURNING id"
)


def trust_params(policy: TrustPolicy, ts: Ts) -> tuple[Any, ...]:
    environments = ",".join(policy.environments) if policy.environments is not None else None
    return (
        policy.id,
        policy.issuer,
        policy.jwks_url,
        policy.jwks_file,
        policy.audience,
        json.dumps(dict(policy.conditions), sort_keys=True),
        encode_scopes(policy.scopes),
        policy.app_id,
        environments,
        policy.ttl,
        policy.description,
        ts(policy.created_at),
    )


# -- audit -------------------------------------------------------------------------------------

INSERT_AUDIT = (
    "INSERT INTO audit_events (at, token_id, app_id, environment, names, action, outcome, "
    "client, count, subject, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def audit_params(events: Sequence[AuditEvent], ts: Ts) -> list[tuple[Any, ...]]:
    return [
        (
            ts(e.at),
            e.token_id,
            e.app_id,
            e.environment,
            ",".join(e.names),
            e.action,
            e.outcome,
            e.client,
            e.count,
            e.subject,
            e.reason,
        )
        for e in events
    ]


def audit_page(query: AuditQuery, ts: Ts) -> tuple[str, str, list[Any]]:
    """``(count statement, page statement, parameters)`` for an audit listing; the page
    statement takes the limit and offset after the parameters."""
    where = ["app_id = ?"]
    params: list[Any] = [query.app_id]
    if query.action:
        where.append("action = ?")
        params.append(query.action)
    if query.name:
        where.append("(',' || names || ',') LIKE ?")
        params.append(f"%,{query.name},%")
    if query.since:
        where.append("at >= ?")
        params.append(ts(query.since))
    if query.environments is not None:
        where.append(f"environment IN ({', '.join('?' * len(query.environments)) or 'NULL'})")
        params.extend(query.environments)
    clause = " AND ".join(where)
    return (
        f"SELECT count(*) FROM audit_events WHERE {clause}",  # noqa: S608
        f"SELECT * FROM audit_events WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
        params,
    )


# -- consumers and the restart budget (issue 20) -------------------------------------------------

CONSUMER_COLUMNS = (
    "env_id, consumer_id, kind, host, version, rendered, running, health, failed, seq, last_seen"
)
# A report older than the one stored (a late request: lower ``seq``) changes nothing.
UPSERT_CONSUMER = (
    f"INSERT INTO consumers ({CONSUMER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (env_id, consumer_id) DO UPDATE SET kind = excluded.kind, "
    "host = excluded.host, version = excluded.version, rendered = excluded.rendered, "
    "running = excluded.running, health = excluded.health, failed = excluded.failed, "
    "seq = excluded.seq, last_seen = excluded.last_seen WHERE excluded.seq >= consumers.seq"
)
CONSUMERS_OF_ENVIRONMENT = (
    f"SELECT {CONSUMER_COLUMNS} FROM consumers "  # noqa: S608
    "WHERE env_id = ? AND last_seen > ? ORDER BY consumer_id"
)
# Every live consumer with its environment (the metrics: lag and states per environment).
LIVE_CONSUMERS = (
    "SELECT c.env_id, c.consumer_id, c.kind, c.host, c.version, c.rendered, c.running, "
    "c.health, c.failed, c.seq, c.last_seen, e.app_id, e.name AS env_name, "
    "e.revision AS newest FROM consumers c JOIN environments e ON e.id = c.env_id "
    "WHERE c.last_seen > ?"
)
FORGET_CONSUMERS = "DELETE FROM consumers WHERE last_seen < ?"
GET_POLICY = "SELECT max_unavailable FROM rollout_policies WHERE env_id = ?"
SET_POLICY = (
    "INSERT INTO rollout_policies (env_id, max_unavailable) VALUES (?, ?) "
    "ON CONFLICT (env_id) DO UPDATE SET max_unavailable = excluded.max_unavailable"
)
CLEAR_POLICY = "DELETE FROM rollout_policies WHERE env_id = ?"
# What a slot grant decides on, read inside its transaction: the newest revision, the policy,
# the live runners and how many of them failed at the newest revision (a paused rollout).
BUDGET_INPUTS = (
    "SELECT e.revision, (SELECT max_unavailable FROM rollout_policies p WHERE p.env_id = e.id), "
    "(SELECT count(*) FROM consumers c WHERE c.env_id = e.id AND c.kind = 'runner' "
    "AND c.last_seen > ?), "
    "(SELECT count(*) FROM consumers c WHERE c.env_id = e.id AND c.kind = 'runner' "
    "AND c.last_seen > ? AND c.failed IS NOT NULL AND c.failed >= e.revision) "
    "FROM environments e WHERE e.id = ?"
)
EXPIRE_SLOTS = "DELETE FROM restart_slots WHERE env_id = ? AND expires_at <= ?"
HELD_SLOTS = "SELECT consumer_id FROM restart_slots WHERE env_id = ?"
PUT_SLOT = (
    "INSERT INTO restart_slots (env_id, consumer_id, revision, granted_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (env_id, consumer_id) DO UPDATE SET "
    "revision = excluded.revision, expires_at = excluded.expires_at"
)
RELEASE_SLOT = "DELETE FROM restart_slots WHERE env_id = ? AND consumer_id = ?"
LIST_SLOTS = (
    "SELECT consumer_id, revision, granted_at, expires_at FROM restart_slots "
    "WHERE env_id = ? AND expires_at > ? ORDER BY granted_at, consumer_id"
)


def consumer_params(consumers: Sequence[Consumer], ts: Ts) -> list[tuple[Any, ...]]:
    return [
        (
            c.env_id,
            c.report.id,
            c.report.kind,
            c.report.host,
            c.report.version,
            c.report.rendered,
            c.report.running,
            c.report.health,
            c.report.failed,
            c.report.seq,
            ts(c.last_seen),
        )
        for c in consumers
    ]


# -- schema migrations -------------------------------------------------------------------------

SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
