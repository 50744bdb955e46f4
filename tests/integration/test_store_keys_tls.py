"""Key rotation under load, OAuth clients from the CLI, and TLS, with real store processes."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import threading
import time
import warnings
from pathlib import Path

import pytest
import trustme

from loader.httpclient import HttpClient
from tests.pg import PostgresServer
from tests.procs import free_port, init_store, loader_env, run_loader, start_agent, start_store


def test_rotate_key_under_load_then_remove_the_old_key(
    tmp_path: Path, backend: PostgresServer | None
) -> None:
    """1. a store serving 20 secrets; 2. a reader/writer loop runs while `rotate-key` re-wraps
    every data key: no request fails; 3. the old key is reported removable and removed; 4. the
    store (restarted too) still reads everything; 5. --reencrypt gives fresh data keys and
    ciphertexts, values unchanged; 6. a key still in use cannot be removed."""
    data = tmp_path / "store"
    env = loader_env()
    if backend is not None:
        db = backend.create_database()
        env["LOADER_DATABASE_URL"] = backend.url(db)
    init = run_loader("store", "init", "--data-dir", str(data), "--json", env=env)
    admin = json.loads(init.stdout)["admin_token"]
    port = free_port()
    store = start_store(data, listen=f"127.0.0.1:{port}", env=env)
    client = HttpClient(store.url, token=admin)
    app = client.call("POST", "/v1/apps", {"name": "rotating"}).json()["id"]
    client.call("POST", f"/v1/apps/{app}/environments", {"name": "prod"})
    expected = {f"S{i}": f"value-{i}" for i in range(20)}
    for name, value in expected.items():
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": name, "value": value})
    old_key = (data / "master.key").read_text().split(":")[0]
    errors: list[str] = []
    reads = [0]
    stop = threading.Event()

    def load() -> None:
        c = HttpClient(store.url, token=admin)
        i = 0
        while not stop.is_set():
            i += 1
            # A new revision each time, so every read decrypts instead of hitting the cache.
            w = c.request("POST", f"/v1/apps/{app}/secrets", {"name": "TICK", "value": str(i)})
            r = c.request("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
            if w.status != 200 or r.status != 200:
                errors.append(f"{w.status}/{r.status}")
            else:
                reads[0] += 1
        c.close()

    loop = threading.Thread(target=load)
    loop.start()
    try:
        out = run_loader(
            "store",
            "rotate-key",
            "--data-dir",
            str(data),
            "--new-key-file",
            str(tmp_path / "k2"),
            "--json",
            env=env,
        )
    finally:
        stop.set()
        loop.join()
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert errors == [] and reads[0] > 5
    assert report["rewrapped"] == 2 and report["removable"] == [old_key]
    assert report["key_usage"] == {report["new_key_id"]: 2}
    assert (tmp_path / "k2").stat().st_mode & 0o777 == 0o600

    removed = run_loader("store", "remove-key", old_key, "--data-dir", str(data), env=env)
    assert removed.returncode == 0, removed.stderr
    assert old_key not in (data / "master.key").read_text()
    values = client.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
    assert {k: v for k, v in values.json()["secrets"].items() if k != "TICK"} == expected
    client.close()
    store.stop()

    store = start_store(data, listen=f"127.0.0.1:{port}", env=env)
    client = HttpClient(store.url, token=admin)
    before = _ciphertexts(data, backend, env)
    out = run_loader(
        "store",
        "rotate-key",
        "--data-dir",
        str(data),
        "--new-key-file",
        str(tmp_path / "k3"),
        "--reencrypt",
        "--json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["reencrypted_environments"] == 2 and report["reencrypted_values"] >= 21
    after = _ciphertexts(data, backend, env)
    assert set(before) == set(after) and all(before[k] != after[k] for k in before)
    values = client.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
    assert {k: v for k, v in values.json()["secrets"].items() if k != "TICK"} == expected
    still_used = run_loader(
        "store", "remove-key", report["new_key_id"], "--data-dir", str(data), env=env
    )
    assert still_used.returncode == 78
    client.close()
    store.stop()


def _ciphertexts(
    data: Path, backend: PostgresServer | None, env: dict[str, str]
) -> dict[tuple[int, int], bytes]:
    query = (
        "SELECT secret_id, version, ciphertext FROM secret_versions WHERE ciphertext IS NOT NULL"
    )
    if backend is None:
        db = sqlite3.connect(data / "loader.db")
        rows = db.execute(query).fetchall()
        db.close()
        return {(r[0], r[1]): r[2] for r in rows}
    out = backend.psql(query, env["LOADER_DATABASE_URL"].rsplit("/", 1)[1])
    parsed = (line.split("|") for line in out.splitlines())
    return {(int(s), int(v)): bytes.fromhex(c.removeprefix("\\x")) for s, v, c in parsed}


def test_oauth_client_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "store"
    admin = init_store(data)
    store = start_store(data)
    try:
        c = HttpClient(store.url, token=admin)
        app = c.call("POST", "/v1/apps", {"name": "oauth"}).json()["id"]
        c.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "through a jwt"})
        out = run_loader(
            "store",
            "client",
            "create",
            "--data-dir",
            str(data),
            "--scopes",
            "secrets:reveal",
            "--app",
            str(app),
            "--json",
        )
        assert out.returncode == 0, out.stderr
        creds = json.loads(out.stdout)
        assert set(creds) == {"client_id", "client_secret"}
        anon = HttpClient(store.url)
        issued = anon.call(
            "POST", "/oauth/token", {"grant_type": "client_credentials", **creds}
        ).json()
        reader = HttpClient(store.url, token=issued["access_token"])
        got = reader.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        assert got.json()["secrets"] == {"A": "through a jwt"}
        listed = run_loader("store", "token", "list", "--data-dir", str(data), "--json")
        assert creds["client_id"] in listed.stdout.decode()
        assert creds["client_secret"] not in listed.stdout.decode()
        assert (
            run_loader(
                "store", "token", "revoke", creds["client_id"], "--data-dir", str(data)
            ).returncode
            == 0
        )
        again = reader.request("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        assert again.status == 401
        for client in (c, anon, reader):
            client.close()
    finally:
        store.stop()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        with cert_file.open("ab") as f:
            f.write(pem.bytes())
    return ca_file, cert_file, key_file


def test_tls_store_agent_cli_and_refused_clients(
    tmp_path: Path, shm: Path, tls: tuple[Path, Path, Path]
) -> None:
    ca_file, cert_file, key_file = tls
    data = tmp_path / "store"
    admin = init_store(data)
    store = start_store(data, "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    assert store.url.startswith("https://")
    port = int(store.url.rsplit(":", 1)[1])
    try:
        env = loader_env(
            LOADER_STORE_URL=store.url, LOADER_TOKEN=admin, LOADER_CA_FILE=str(ca_file)
        )
        created = run_loader("apps", "create", "tls-app", "--json", env=env)
        assert created.returncode == 0, created.stderr
        app = str(json.loads(created.stdout)["id"])
        assert (
            run_loader("secrets", "set", "A", "--app", app, stdin=b"over tls", env=env).returncode
            == 0
        )
        untrusted = run_loader("apps", "list", env={**env, "LOADER_CA_FILE": ""})
        assert untrusted.returncode == 69 and b"TLS" in untrusted.stderr
        # the runner, straight from the store over TLS
        out = run_loader("run", "--", "sh", "-c", 'printf %s "$A"', env={**env, "LOADER_APP": app})
        assert out.stdout == b"over tls", out.stderr
        # the agent verifies with the same CA
        agent = start_agent(
            tmp_path / "agent.log",
            "--output",
            str(shm / "env"),
            "--listen",
            "off",
            "--ca-file",
            str(ca_file),
            wait_listening=False,
            env={**env, "LOADER_APP": app},
        )
        try:
            deadline = time.monotonic() + 15
            while not (shm / "env").exists():
                assert time.monotonic() < deadline, agent.logs()
                time.sleep(0.02)
            assert "A='over tls'" in (shm / "env").read_text()
        finally:
            agent.stop()
        # TLS 1.3 is what a modern client gets; TLS 1.0/1.1 and plain HTTP are refused.
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            assert conn.version() == "TLSv1.3"
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(ca_file))
        # Let the client *offer* TLS 1.0/1.1 (OpenSSL's default security level forbids it), so
        # the refusal is the server's.
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", port)) as raw, pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = raw.recv(4096)
        assert b'"status"' not in reply
    finally:
        store.stop()
