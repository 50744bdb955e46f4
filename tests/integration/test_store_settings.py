"""The store's settings as a real `loader store` process reads them: the database URL from a
file (LOADER_DATABASE_URL_FILE, as the Helm chart mounts it), the flag over the variable, and
one line (exit 78) for each refusal, never showing the URL's password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from tests.pg import PostgresServer
from tests.procs import (
    LOADER,
    init_store,
    loader_env,
    run_loader,
    spawn,
    start_store,
    wait_for_line,
)

PASSWORD = "canary-pw-5Qz8"


def _url_file(path: Path, url: str) -> Path:
    path.write_text(url + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.postgres
def test_the_database_url_from_a_file_serves_postgres(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    """1. `store init` and `store serve` find PostgreSQL through LOADER_DATABASE_URL_FILE
    (no data directory, no URL in the environment); 2. a secret written through it is in that
    database (a second store given the URL directly reads it); 3. the password shows nowhere."""
    url = pg_server.url(pg_server.create_database()).replace(
        "://postgres@", f"://postgres:{PASSWORD}@"
    )
    assert PASSWORD in url
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    env = loader_env(
        LOADER_DATABASE_URL_FILE=str(_url_file(tmp_path / "url", url)),
        LOADER_MASTER_KEY_FILE=str(keys / "master.key"),
    )
    init = run_loader("store", "init", "--json", env=env)
    assert init.returncode == 0, init.stderr
    admin = json.loads(init.stdout)["admin_token"]
    store = spawn([*LOADER, "store", "serve", "--listen", "127.0.0.1:0"], tmp_path / "s.log", env)
    try:
        store.url = wait_for_line(store, r"listening on (http://\S+)")
        client = HttpClient(store.url, token=admin)
        app = client.call("POST", "/v1/apps", {"name": "from-file"}).json()["id"]
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "A", "value": "1"})
        client.close()
        environ = Path(f"/proc/{store.pid}/environ").read_bytes()
    finally:
        store.stop()
    assert b"LOADER_DATABASE_URL=" not in environ
    direct = start_store(keys, env=loader_env(LOADER_DATABASE_URL=url))
    try:
        reader = HttpClient(direct.url, token=admin)
        names = reader.call("GET", f"/v1/apps/{app}/secrets").json()["secrets"]
        reader.close()
    finally:
        direct.stop()
    assert [s["name"] for s in names] == ["A"]
    for text in (init.stdout, init.stderr, store.logs().encode(), store.output().encode()):
        assert PASSWORD.encode() not in text


def test_a_flag_wins_over_the_file(tmp_path: Path) -> None:
    """--database-url beats LOADER_DATABASE_URL_FILE (the file is not even read)."""
    data = tmp_path / "data"
    init_store(data)
    env = loader_env(LOADER_DATABASE_URL_FILE=str(tmp_path / "missing"))
    out = run_loader(
        "store",
        "migrate",
        "--data-dir",
        str(data),
        "--database-url",
        f"sqlite:///{data / 'loader.db'}",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert b"up to date" in out.stdout


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("both", "set LOADER_DATABASE_URL or LOADER_DATABASE_URL_FILE, not both"),
        ("missing", "LOADER_DATABASE_URL_FILE: cannot read"),
        ("empty", "is empty"),
        ("not-utf8", "is not UTF-8 text"),
        ("writable", "writable"),
        ("bad-url", "LOADER_DATABASE_URL / --database-url: database url must start with"),
        ("both-tls", "--tls-cert and --tls-key go together"),
        ("bad-duration", "LOADER_DB_TIMEOUT / --db-timeout"),
        ("bad-level", "LOADER_LOG_LEVEL / --log-level"),
    ],
)
def test_store_settings_refusals_are_one_line(tmp_path: Path, setup: str, fragment: str) -> None:
    data = tmp_path / "data"
    url_file = tmp_path / "url"
    env = loader_env(LOADER_DATA_DIR=str(data), LOADER_DATABASE_URL_FILE=str(url_file))
    secret_url = f"postgresql://u:{PASSWORD}@127.0.0.1:9/db"
    if setup == "both":
        _url_file(url_file, secret_url)
        env["LOADER_DATABASE_URL"] = secret_url
    elif setup == "empty":
        _url_file(url_file, "")
    elif setup == "not-utf8":
        url_file.write_bytes(b"\xff" + PASSWORD.encode())
    elif setup == "writable":
        _url_file(url_file, secret_url).chmod(0o666)
    elif setup == "bad-url":
        _url_file(url_file, f"mysql://u:{PASSWORD}@db/x")
    elif setup == "both-tls":
        del env["LOADER_DATABASE_URL_FILE"]
        env["LOADER_TLS_CERT"] = str(tmp_path / "cert.pem")
    elif setup == "bad-duration":
        del env["LOADER_DATABASE_URL_FILE"]
        env["LOADER_DB_TIMEOUT"] = "soon"
    elif setup == "bad-level":
        del env["LOADER_DATABASE_URL_FILE"]
        env["LOADER_LOG_LEVEL"] = "loud"
    out = run_loader("store", "serve", env=env)
    err = out.stderr.decode()
    assert out.returncode == 78, err
    assert err.count("\n") == 1 and fragment in err, err
    assert PASSWORD not in err + out.stdout.decode()
    assert not data.exists()  # refused before anything was created
