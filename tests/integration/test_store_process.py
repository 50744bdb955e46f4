"""`loader store init|serve|token` as real processes: files, ports, durability, exit codes."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from tests.procs import init_store, loader_env, run_loader, start_store, store_process


def test_init_creates_private_files_and_prints_the_token_once(tmp_path: Path) -> None:
    data = tmp_path / "store"
    first = run_loader("store", "init", "--data-dir", str(data), "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["admin_token"].startswith("lt_")
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "master.key").stat().st_mode & 0o777 == 0o600
    assert (data / "loader.db").stat().st_mode & 0o777 == 0o600
    key_before = (data / "master.key").read_bytes()

    again = run_loader("store", "init", "--data-dir", str(data), "--json")
    assert again.returncode == 0
    assert "admin_token" not in json.loads(again.stdout)
    assert result["admin_token"] not in again.stdout.decode() + again.stderr.decode()
    assert (data / "master.key").read_bytes() == key_before
    conn = sqlite3.connect(data / "loader.db")
    assert conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 1
    conn.close()


def test_serve_refuses_without_a_master_key(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    (data / "master.key").unlink()
    out = run_loader("store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 78
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "master key" in lines[0]


def test_serve_refuses_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    conn = sqlite3.connect(data / "loader.db")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    conn.commit()
    conn.close()
    out = run_loader("store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 78
    assert b"newer" in out.stderr


def test_init_refuses_a_database_without_its_key(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    (data / "master.key").unlink()
    out = run_loader("store", "init", "--data-dir", str(data))
    assert out.returncode == 78
    assert not (data / "master.key").exists()


def test_serve_prints_its_port_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    proc = start_store(data)
    try:
        client = HttpClient(proc.url)
        assert client.call("GET", "/v1/health").json() == {"status": "ok"}
        client.close()
    finally:
        assert proc.stop(signal.SIGTERM) == 0


def test_sigterm_as_soon_as_it_says_it_listens_stops_it_cleanly(tmp_path: Path) -> None:
    """The store handles SIGTERM before it announces its address: a supervisor that stops it
    the moment it reads the line gets a clean exit 0, not a death on the default handler."""
    data = tmp_path / "store"
    init_store(data)
    for _ in range(5):
        proc = start_store(data)  # returns as soon as the "listening on" line is read
        assert proc.stop(signal.SIGTERM) == 0


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    """1. write 40 secrets, each acknowledged; 2. SIGKILL the store; 3. restart: all there."""
    data = tmp_path / "store"
    token = init_store(data)
    proc = start_store(data)
    client = HttpClient(proc.url, token=token)
    app = client.call("POST", "/v1/apps", {"name": "durable"}).json()["id"]
    written = {}
    for i in range(40):
        value = f"value-{i}-" + "x" * i
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": f"S{i}", "value": value})
        written[f"S{i}"] = value
    client.close()
    proc.stop(signal.SIGKILL)

    with store_process(data) as again:
        client = HttpClient(again.url, token=token)
        got = client.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full").json()
        client.close()
    assert got["secrets"] == written
    conn = sqlite3.connect(data / "loader.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_token_create_binds_scopes_app_and_environments(tmp_path: Path) -> None:
    data = tmp_path / "store"
    admin = init_store(data)
    with store_process(data) as proc:
        client = HttpClient(proc.url, token=admin)
        app = client.call("POST", "/v1/apps", {"name": "bound"}).json()["id"]
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "v"})
        out = run_loader(
            "store",
            "token",
            "create",
            "--data-dir",
            str(data),
            "--scopes",
            "secrets:reveal",
            "--app",
            str(app),
            "--env",
            "default",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        assert set(created) == {"token", "id"}
        reader = HttpClient(proc.url, token=created["token"])
        got = reader.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        assert got.json()["secrets"] == {"A": "v"}
        assert reader.request("GET", f"/v1/apps/{app}/secrets").status == 403
        listed = run_loader("store", "token", "list", "--data-dir", str(data), "--json")
        ids = [t["id"] for t in json.loads(listed.stdout)["tokens"]]
        assert created["id"] in ids
        assert created["token"] not in listed.stdout.decode()
        revoke = run_loader("store", "token", "revoke", created["id"], "--data-dir", str(data))
        assert revoke.returncode == 0
        assert (
            reader.request("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full").status
            == 401
        )
        reader.close()
        client.close()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["store", "token", "create", "--scopes", "nope:x"], 64),
        (["store", "token", "create", "--scopes", "*", "--ttl", "soon"], 64),
        (["store", "serve", "--listen", "nowhere"], 78),
        (["store", "nonsense"], 64),
    ],
)
def test_store_cli_bad_usage(tmp_path: Path, args: list[str], code: int) -> None:
    data = tmp_path / "store"
    init_store(data)
    out = run_loader(*args, "--data-dir", str(data), env=loader_env())
    assert out.returncode == code, out.stderr
