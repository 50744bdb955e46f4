"""`loader store copy` between SQLite and PostgreSQL, and PostgreSQL's own backup (pg_dump)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loader.crypto import Keyring
from loader.store.auth import issue_token
from loader.store.keyfile import StaticKeyring, write_key_file
from loader.store.models import AuditEvent, TokenRecord, utcnow
from loader.store.service import StoreService
from loader.store.sqlite import SQLiteRepository
from loader.store.transfer import TABLES
from loader.store.trust import make_policy
from tests.pg import PostgresServer
from tests.procs import run_loader, start_store

pytestmark = pytest.mark.postgres

SECRETS = 2000


def test_the_copy_covers_every_column_of_the_schema(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    """A migration that adds a table or column must teach `store copy` about it."""

    async def sqlite_columns() -> dict[str, list[str]]:
        repo = await SQLiteRepository.open(tmp_path / "s.db", migrate=True)
        await repo.close()
        conn = sqlite3.connect(tmp_path / "s.db")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT IN ('schema_migrations', 'sqlite_sequence')"
            )
        ]
        return {n: [c[1] for c in conn.execute(f"PRAGMA table_info({n})")] for n in names}

    expected = {t.name: sorted(t.columns) for t in TABLES}
    assert {k: sorted(v) for k, v in asyncio.run(sqlite_columns()).items()} == expected
    rows = pg_server.psql(
        "SELECT table_name || '.' || column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'schema_migrations'",
        "loader_template",
    ).split()
    found: dict[str, list[str]] = {}
    for row in rows:
        table, column = row.split(".")
        found.setdefault(table, []).append(column)
    assert {k: sorted(v) for k, v in found.items()} == expected


async def fill(path: Path, keyring: Keyring) -> dict[str, str]:
    """2,000 secrets over 4 apps x 2 environments, 500 with a second version, 100 declared
    without a value, deletions (gaps in the ids), tokens, a client, a revocation, audit."""
    repo = await SQLiteRepository.open(path, migrate=True)
    service = StoreService(repo, StaticKeyring(keyring))
    expected: dict[str, str] = {}
    try:
        envs = []
        for a in range(4):
            app = await service.create_app(f"app{a}")
            await service.create_environment(app.id, "prod")
            envs += [await service.environment(app.id), await service.environment(app.id, "prod")]

        def event(env: Any, name: str) -> AuditEvent:
            return AuditEvent(
                at=utcnow(), action="upsert_secret", outcome="ok", app_id=env.app_id,
                environment=env.name, names=(name,), token_id="lt_fill",
            )  # fmt: skip

        async def put(i: int, value: str | None) -> None:
            env = envs[i % len(envs)]
            name = f"S{i}"
            if value is not None:
                key = f"{env.app_id}/{env.name}/{name}"
                expected[key] = value
            await service.write(env, name, value=value, actor="lt_fill", audit=event(env, name))

        for start in range(0, SECRETS, 250):
            await asyncio.gather(
                *(
                    put(i, f"value {i} " + "x" * (i % 50) if i % 20 else None)
                    for i in range(start, min(SECRETS, start + 250))
                )
            )
        await asyncio.gather(*(put(i, f"second {i}") for i in range(1, SECRETS, 4)))
        for i in (3, 7, 11):
            env = envs[i % len(envs)]
            await service.delete(env, f"S{i}")
            expected.pop(f"{env.app_id}/{env.name}/S{i}", None)
        for n in range(5):
            await issue_token(repo, frozenset({"secrets:read"}), app_id=1, description=f"t{n}")
        record, _ = await issue_token(repo, frozenset({"*"}))
        await repo.revoke_token(record.id, utcnow())
        await repo.create_token(
            TokenRecord(
                id="lc_client", kind="client", digest=b"d" * 32, scopes=frozenset({"apps:read"}),
                app_id=2, environments=("prod",), created_at=utcnow(), description="client",
            )
        )  # fmt: skip
        await repo.append_audit(
            [AuditEvent(at=utcnow(), action="reveal", outcome="ok", app_id=1) for _ in range(100)]
        )
        for n in range(2):  # workload identity: a live trust policy and a deleted one
            policy = make_policy(
                issuer="https://issuer.example", audience="loader-store",
                conditions={"kubernetes.io.namespace": f"ns{n}"}, scopes=frozenset({"*"}),
                app_id=1, environments=("prod",), ttl=600, now=utcnow(),
                jwks_url="https://issuer.example/jwks",
            )  # fmt: skip
            await repo.create_trust_policy(policy)
        await repo.delete_trust_policy(policy.id, utcnow())
        await repo.append_audit(
            [
                AuditEvent(
                    at=utcnow(), action="issue_access_token", outcome="unauthorized",
                    token_id=policy.id, subject="system:serviceaccount:ns1:api", reason="expired",
                )
            ]
        )  # fmt: skip
    finally:
        await repo.close()
    return expected


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        out = {
            t.name: conn.execute(
                f"SELECT {', '.join(t.columns)} FROM {t.name} ORDER BY {t.order}"
            ).fetchall()
            for t in TABLES
        }
        out["sqlite_sequence"] = conn.execute(
            "SELECT name, seq FROM sqlite_sequence ORDER BY name"
        ).fetchall()
        return out
    finally:
        conn.close()


def copy(source: str, target: str, key: Path) -> subprocess.CompletedProcess[bytes]:
    return run_loader(
        "store", "copy", "--from", source, "--to", target, "--master-key-file", str(key), "--json"
    )


def test_copy_sqlite_to_postgresql_and_back_keeps_every_row(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    """1. a SQLite store with 2,000 secrets, versions, audit, tokens; 2. copied to PostgreSQL;
    3. copied back to a new SQLite file: every row of every table, and each id sequence, equal
    to the original; 4. the copy serves: every value decrypts; 5. a non-empty target, a live
    source and a wrong key are refused; 6. pg_dump/pg_restore of the PostgreSQL copy (the
    documented backup) copies back to the same rows."""
    keyring = Keyring.generate()
    key = tmp_path / "master.key"
    write_key_file(key, keyring)
    (tmp_path / "a").mkdir()
    a = tmp_path / "a" / "loader.db"
    expected = asyncio.run(fill(a, keyring))
    assert len(expected) > 1800

    pg_url = pg_server.url(pg_server.create_database())
    there = copy(f"sqlite:///{a}", pg_url, key)
    assert there.returncode == 0, there.stderr
    report = json.loads(there.stdout)
    assert report["counts"]["secrets"] == SECRETS - 3
    assert report["counts"]["secret_versions"] > SECRETS
    assert report["counts"]["tokens"] == 7
    assert report["counts"]["trust_policies"] == 2
    assert report["counts"]["audit_events"] > SECRETS
    assert report["values_decrypted"] > 0 and report["data_keys_checked"] == 8

    (tmp_path / "b").mkdir(mode=0o700)
    b = tmp_path / "b" / "loader.db"
    back = copy(pg_url, f"sqlite:///{b}", key)
    assert back.returncode == 0, back.stderr
    assert dump(b) == dump(a)

    # 4. the copy serves, with the same master key, and ids go on after the source's
    (tmp_path / "b" / "master.key").write_bytes(key.read_bytes())
    (tmp_path / "b" / "master.key").chmod(0o600)
    admin = json.loads(
        run_loader(
            "store", "token", "create", "--data-dir", str(tmp_path / "b"), "--scopes", "*",
            "--json",
        ).stdout
    )["token"]  # fmt: skip
    store = start_store(tmp_path / "b")
    try:
        from loader.httpclient import HttpClient

        client = HttpClient(store.url, token=admin)
        seen: dict[str, str] = {}
        for app in range(1, 5):
            for env in ("default", "prod"):
                values = client.call(
                    "GET", f"/v1/apps/{app}/environments/{env}/rendered?mode=full"
                ).json()["secrets"]
                seen.update({f"{app}/{env}/{k}": v for k, v in values.items()})
        assert seen == expected
        created = client.call("POST", "/v1/apps", {"name": "new"}).json()
        assert created["id"] > max(r[0] for r in dump(a)["apps"])
        client.close()
    finally:
        store.stop()

    # 5. refusals
    again = copy(f"sqlite:///{a}", pg_url, key)
    assert again.returncode == 73 and b"not empty" in again.stderr
    live = start_store(tmp_path / "b")
    try:
        busy = copy(f"sqlite:///{b}", pg_server.url(pg_server.create_database()), key)
        assert busy.returncode == 78 and b"stop it" in busy.stderr
    finally:
        live.stop()
    wrong = tmp_path / "wrong.key"
    write_key_file(wrong, Keyring.generate())
    empty = pg_server.url(pg_server.create_database())
    refused = copy(f"sqlite:///{a}", empty, wrong)
    assert refused.returncode == 78 and b"nothing was committed" in refused.stderr
    assert pg_server.psql("SELECT count(*) FROM secrets", empty.rsplit("/", 1)[1]) == "0"

    # 6. pg_dump / pg_restore, as docs/operations.md describes
    dumped = tmp_path / "store.dump"
    subprocess.run(
        [str(pg_server.bindir / "pg_dump"), "--format=custom", "--file", str(dumped), pg_url],
        check=True,
        capture_output=True,
    )
    restored = pg_server.create_database()
    subprocess.run(
        [
            str(pg_server.bindir / "pg_restore"), "--no-owner", "--dbname",
            pg_server.url(restored), str(dumped),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (tmp_path / "c").mkdir()
    c = tmp_path / "c" / "loader.db"
    assert copy(pg_server.url(restored), f"sqlite:///{c}", key).returncode == 0
    assert dump(c) == dump(a)
