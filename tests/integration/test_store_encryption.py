"""Encryption at rest: canaries never reach the database files or logs; tampering fails closed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.store_harness import Store

CANARY = "canary-7f3a9c-plaintext-must-not-leak"


async def test_canary_is_nowhere_on_disk_or_in_logs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = await store.app("canary")
    await store.env(app, "prod")
    # Every write path: Spice upsert, env upsert, declare + PUT value, description, rollback.
    h = store.auth(store.admin)
    c = store.client
    await c.post(f"/v1/apps/{app}/secrets", json={"name": "A", "value": CANARY}, headers=h)
    await c.post(
        f"/v1/apps/{app}/environments/prod/secrets",
        json={"name": "B", "value": CANARY + "-b", "description": "desc"},
        headers=h,
    )
    await c.post(f"/v1/apps/{app}/environments/prod/secrets", json={"name": "C"}, headers=h)
    await c.put(
        f"/v1/apps/{app}/environments/prod/secrets/C/value",
        json={"value": CANARY + "-c"},
        headers=h,
    )
    await c.post(
        f"/v1/apps/{app}/environments/prod/secrets", json={"name": "B", "value": "x"}, headers=h
    )
    await c.post(
        f"/v1/apps/{app}/environments/prod/secrets/B/rollback", json={"version": 1}, headers=h
    )
    # Refused writes carrying the canary.
    await c.post(f"/v1/apps/{app}/secrets", json={"name": "bad-name", "value": CANARY}, headers=h)
    await c.post(f"/v1/apps/{app}/secrets", json={"name": "A", "value": CANARY, "x": 1}, headers=h)
    await c.post(
        f"/v1/apps/{app}/secrets",
        json={"name": "A", "value": CANARY},
        headers=store.auth("lt_000000000000_wrong"),
    )
    revealed = await store.reveal(app, "prod")
    assert revealed == {"B": CANARY + "-b", "C": CANARY + "-c"}
    assert await store.reveal(app) == {"A": CANARY}

    await store.state.audit.flush()
    files = await store.disk_files()
    assert files, "expected the database's files"
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path.name
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in str(record.args)


async def test_ciphertext_copied_to_another_secret_fails(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "value-a")
    await store.put(app, "B", "value-b")
    await store.sql(
        "UPDATE secret_versions SET nonce = (SELECT nonce FROM secret_versions v "
        "JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'A'), ciphertext = "
        "(SELECT ciphertext FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
        "WHERE s.name = 'A') WHERE secret_id = (SELECT id FROM secrets WHERE name = 'B')",
    )
    await store.put(app, "C", "bump")  # new revision, so no cached reveal is reused
    resp = await store.client.get(
        f"/v1/apps/{app}/environments/default/rendered?mode=full", headers=store.auth(store.admin)
    )
    assert resp.status == 500
    body = await resp.text()
    assert "value-a" not in body and "value-b" not in body


async def test_ciphertext_copied_to_another_environment_fails(store: Store) -> None:
    app = await store.app()
    await store.env(app, "prod")
    await store.put(app, "A", "default-a")
    await store.put(app, "A", "prod-a", env="prod")
    # Same name, same version, same app: only the environment differs (and its data key).
    await store.sql(
        "UPDATE secret_versions SET data_key_id = (SELECT data_key_id FROM environments "
        "WHERE name = 'default'), nonce = (SELECT v.nonce FROM secret_versions v JOIN secrets s "
        "ON s.id = v.secret_id JOIN environments e ON e.id = s.env_id WHERE e.name = 'default'), "
        "ciphertext = (SELECT v.ciphertext FROM secret_versions v JOIN secrets s ON s.id = "
        "v.secret_id JOIN environments e ON e.id = s.env_id WHERE e.name = 'default') "
        "WHERE secret_id = (SELECT s.id FROM secrets s JOIN environments e ON e.id = s.env_id "
        "WHERE e.name = 'prod')",
    )
    await store.put(app, "B", "bump", env="prod")
    resp = await store.client.get(
        f"/v1/apps/{app}/environments/prod/rendered?mode=full", headers=store.auth(store.admin)
    )
    assert resp.status == 500
    assert "default-a" not in await resp.text()


async def test_flipped_ciphertext_bit_fails(store: Store) -> None:
    app = await store.app()
    await store.put(app, "A", "value-a")
    ((blob,),) = await store.sql("SELECT ciphertext FROM secret_versions")
    flipped = bytes([blob[0] ^ 1]) + blob[1:]
    await store.sql(f"UPDATE secret_versions SET ciphertext = {_literal(flipped, store)}")
    await store.put(app, "B", "bump")
    resp = await store.client.get(
        f"/v1/apps/{app}/environments/default/rendered?mode=full&names=A",
        headers=store.auth(store.admin),
    )
    assert resp.status == 500


async def test_data_keys_are_per_environment_and_wrapped(store: Store) -> None:
    a, b = await store.app("a"), await store.app("b")
    await store.env(a, "prod")
    rows = await store.sql(
        "SELECT env_id, master_key_id, length(nonce), length(wrapped) FROM data_keys"
    )
    assert len({r[0] for r in rows}) == 3 == len(rows)
    assert {r[1] for r in rows} == {store.keyring.primary.id}
    assert {r[2] for r in rows} == {12}
    assert {r[3] for r in rows} == {32 + 16}
    assert b != a


def _literal(blob: bytes, store: Store) -> str:
    return f"X'{blob.hex()}'" if store.backend == "sqlite" else f"'\\x{blob.hex()}'::bytea"


def test_key_file_is_0600(tmp_path: Path) -> None:
    from loader.store.keyfile import create_key_file

    path = tmp_path / "k"
    create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
