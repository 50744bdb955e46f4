"""The SQLite store's files cannot vanish quietly, and the processes survive SIGHUP: one serve per
database, refused starts that leave the -wal alone, honest `store migrate`, log rotation."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from loader.httpclient import HttpClient
from loader.store.migrations import latest
from tests.procs import (
    LiveStore,
    free_port,
    init_store,
    loader_env,
    run_loader,
    start_agent,
    start_store,
    wait_until,
)

SCHEMA = latest("sqlite")


def put(url: str, token: str, app: int, name: str, value: str) -> None:
    c = HttpClient(url, token=token)
    try:
        c.call(
            "POST", f"/v1/apps/{app}/environments/default/secrets", {"name": name, "value": value}
        )
    finally:
        c.close()


def new_app(url: str, token: str, name: str = "app") -> int:
    c = HttpClient(url, token=token)
    try:
        return int(c.call("POST", "/v1/apps", {"name": name}).json()["id"])
    finally:
        c.close()


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text


def test_a_second_serve_on_the_same_database_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "store"
    init_store(data)
    first = start_store(data)
    try:
        second = run_loader("store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
        assert second.returncode == 78
        line = one_line(second.stderr)
        assert f"(pid {first.pid})" in line and "one store per SQLite database" in line
        migrate = run_loader("store", "migrate", "--data-dir", str(data))
        assert migrate.returncode == 78 and "is serving" in one_line(migrate.stderr)
        assert HttpClient(first.url).call("GET", "/v1/health").status == 200
    finally:
        assert first.stop() == 0
    again = start_store(data)  # the lock went with the process
    assert again.stop() == 0


def test_a_deleted_database_is_never_replaced_by_an_empty_one(tmp_path: Path) -> None:
    """The issue's scenario: 1. a store with data, killed with the newest writes still in
    loader.db-wal; 2. loader.db deleted; 3. serve refuses, one line, exit 78, without creating a
    file or touching the -wal; 4. migrate refuses too, naming --init-empty; 5. migrate
    --init-empty creates an empty store and sets the -wal aside (renamed, byte for byte)."""
    data = tmp_path / "store"
    token = init_store(data)
    store = start_store(data)
    app = new_app(store.url, token)
    for i in range(20):
        put(store.url, token, app, f"S{i}", f"value {i}")
    store.stop(signal.SIGKILL)  # no checkpoint: the writes live in the -wal
    wal = data / "loader.db-wal"
    before = wal.read_bytes()
    assert len(before) > 0
    (data / "loader.db").unlink()

    for args in (["serve", "--listen", "127.0.0.1:0"], ["serve", "--migrate"], ["migrate"]):
        out = run_loader("store", *args, "--data-dir", str(data))
        assert out.returncode == 78, out
        line = one_line(out.stderr)
        assert "restore" in line
        assert not (data / "loader.db").exists()
        assert wal.read_bytes() == before
    assert "--init-empty" in one_line(
        run_loader("store", "migrate", "--data-dir", str(data)).stderr
    )

    fresh = run_loader("store", "migrate", "--init-empty", "--data-dir", str(data))
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.decode().strip() == (
        f"created the database schema (version {SCHEMA}) in an empty database"
    )
    orphans = list(data.glob("loader.db-wal.orphan-*"))
    assert len(orphans) == 1 and orphans[0].read_bytes() == before


def test_a_refused_start_on_a_newer_schema_leaves_the_wal(tmp_path: Path) -> None:
    data = tmp_path / "store"
    token = init_store(data)
    store = start_store(data)
    put(store.url, token, new_app(store.url, token), "A", "1")
    store.stop(signal.SIGKILL)
    # A newer loader's schema, committed into the -wal (held open: no checkpoint).
    conn = sqlite3.connect(data / "loader.db")
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'now')")
        conn.commit()
        wal = data / "loader.db-wal"
        snapshot = wal.read_bytes()
        out = run_loader("store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
        assert out.returncode == 78 and "newer" in one_line(out.stderr)
        assert wal.read_bytes() == snapshot
    finally:
        conn.close()


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    data = tmp_path / "store"
    data.mkdir(mode=0o700)
    from loader.store.keyfile import create_key_file

    create_key_file(data / "master.key")
    serve = run_loader("store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    assert serve.returncode == 78 and "loader store init" in one_line(serve.stderr)
    assert not (data / "loader.db").exists()  # a refused serve creates nothing
    first = run_loader("store", "migrate", "--data-dir", str(data))
    assert first.stdout.decode().strip() == (
        f"created the database schema (version {SCHEMA}) in an empty database"
    )
    again = run_loader("store", "migrate", "--data-dir", str(data))
    assert again.stdout.decode().strip() == (
        f"the database schema is at version {SCHEMA}, up to date: nothing to do"
    )


def test_sighup_reopens_the_audit_and_log_files_and_the_store_keeps_serving(
    tmp_path: Path,
) -> None:
    """1. a store with --audit-file and --log-file; 2. logrotate-style: both files renamed,
    SIGHUP; 3. the store still serves, the next records and lines go to new files at the old
    paths, the renamed files keep what was written before; 4. several more SIGHUPs."""
    data = tmp_path / "store"
    token = init_store(data)
    audit, log = tmp_path / "audit.jsonl", tmp_path / "store.log"
    store = start_store(data, "--audit-file", str(audit), "--log-file", str(log))
    try:
        app = new_app(store.url, token)
        put(store.url, token, app, "A", "1")
        wait_until(lambda: audit.exists() and "upsert_secret" in audit.read_text())
        assert "store ready" in log.read_text()
        audit.rename(tmp_path / "audit.jsonl.1")
        log.rename(tmp_path / "store.log.1")
        for _ in range(3):
            store.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: log.exists() and "SIGHUP" in log.read_text(), what="new log")
        assert store.proc.poll() is None
        put(store.url, token, app, "B", "2")
        wait_until(lambda: audit.exists() and '"name":"B"' in audit.read_text(), what="audit")
        assert '"name":"B"' not in (tmp_path / "audit.jsonl.1").read_text()
        assert '"name":"A"' in (tmp_path / "audit.jsonl.1").read_text()
        assert oct(audit.stat().st_mode & 0o777) == "0o600"
    finally:
        assert store.stop() == 0


def test_sighup_does_not_stop_the_agent(tmp_path: Path, shm: Path) -> None:
    live = LiveStore.start(tmp_path)
    live.put("A", "first")
    log = tmp_path / "agent-file.log"
    token = live.token("secrets:reveal")
    env = loader_env(LOADER_STORE_URL=live.url, LOADER_TOKEN=token, LOADER_APP=str(live.app))
    args = ["--output", str(shm / "env"), "--listen", "off", "--log-file", str(log)]
    agent = start_agent(tmp_path / "agent.log", *args, env=env, wait_listening=False)
    try:
        wait_until((shm / "env").exists, what="first render")
        log.rename(tmp_path / "agent-file.log.1")
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log.exists() and "SIGHUP" in log.read_text(), what="reopened")
        live.put("A", "second")
        wait_until(lambda: "second" in (shm / "env").read_text(), what="still following")
        assert agent.proc.poll() is None
    finally:
        code = agent.stop()
        live.proc.stop()
    assert code == 0


def test_backup_under_concurrent_writes_restores_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    """1. a serving store and four writers creating secrets; 2. `store backup` while they
    write; 3. restore it into a new directory (with the master key) and serve it: every write
    acknowledged before the backup began is there with its value."""
    data = tmp_path / "store"
    token = init_store(data)
    port = free_port()
    store = start_store(data, listen=f"127.0.0.1:{port}")
    app = new_app(store.url, token)
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys, time\n"
        "from loader.httpclient import HttpClient\n"
        "url, token, app, me, log = sys.argv[1:]\n"
        "c = HttpClient(url, token=token)\n"
        "with open(log, 'a') as out:\n"
        "    for n in range(100000):\n"
        "        name = f'W{me}_{n}'\n"
        "        c.call('POST', f'/v1/apps/{app}/environments/default/secrets',\n"
        "               {'name': name, 'value': f'value {me} {n}'})\n"
        "        out.write(f'{time.time():.6f} {name}\\n'); out.flush()\n"
    )
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), store.url, token, str(app), str(i), str(logs[i])],
            env=loader_env(),
        )
        for i in range(4)
    ]
    try:
        wait_until(lambda: all(p.exists() and p.stat().st_size > 500 for p in logs))
        began = time.time()
        backup = tmp_path / "backup.db"
        out = run_loader("store", "backup", "--data-dir", str(data), "--output", str(backup))
        assert out.returncode == 0, out.stderr
        assert "master key is not in the backup" in out.stdout.decode()
        wait_until(lambda: all(p.read_text().count("\n") > 10 for p in logs))
    finally:
        for w in writers:
            w.terminate()
            w.wait()
        store.stop()
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    acked = [
        line.split()[1]
        for p in logs
        for line in p.read_text().splitlines()
        if float(line.split()[0]) < began
    ]
    assert len(acked) > 20

    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    (restored / "master.key").write_bytes((data / "master.key").read_bytes())
    (restored / "master.key").chmod(0o600)
    out = run_loader("store", "restore", str(backup), "--data-dir", str(restored))
    assert out.returncode == 0, out.stderr
    again = start_store(restored)
    try:
        values = (
            HttpClient(again.url, token=token)
            .call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
            .json()["secrets"]
        )
    finally:
        again.stop()
    missing = [name for name in acked if name not in values]
    assert not missing, f"{len(missing)} acknowledged writes missing from the backup"
    for name in acked:
        me, n = name[1:].split("_")
        assert values[name] == f"value {me} {n}"


def test_restore_refuses_what_would_lose_data(tmp_path: Path) -> None:
    data = tmp_path / "store"
    token = init_store(data)
    store = start_store(data)
    put(store.url, token, new_app(store.url, token), "A", "1")
    backup = tmp_path / "b.db"
    assert (
        run_loader("store", "backup", "--data-dir", str(data), "--output", str(backup)).returncode
        == 0
    )
    exists = run_loader("store", "backup", "--data-dir", str(data), "--output", str(backup))
    assert exists.returncode == 73
    served = run_loader("store", "restore", str(backup), "--data-dir", str(data), "--force")
    assert served.returncode == 78 and "stop it" in one_line(served.stderr)
    store.stop()
    occupied = run_loader("store", "restore", str(backup), "--data-dir", str(data))
    assert occupied.returncode == 73 and "--force" in one_line(occupied.stderr)

    other = tmp_path / "other"
    init_store(other)  # a different master key
    (other / "loader.db").unlink()
    for side in other.glob("loader.db*"):
        side.unlink()
    wrong = run_loader("store", "restore", str(backup), "--data-dir", str(other))
    assert wrong.returncode == 78 and "master key" in one_line(wrong.stderr)
    assert not (other / "loader.db").exists()

    forced = run_loader("store", "restore", str(backup), "--data-dir", str(data), "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(list(data.glob("loader.db.before-restore-*"))) == 1
    json_out = run_loader(
        "store", "backup", "--data-dir", str(data), "--output", str(tmp_path / "c.db"), "--json"
    )
    assert json.loads(json_out.stdout)["counts"]["secrets"] == 1


def test_store_process_answers_503_json_when_its_file_is_deleted(tmp_path: Path) -> None:
    data = tmp_path / "store"
    token = init_store(data)
    store = start_store(data)
    try:
        app = new_app(store.url, token)
        (data / "loader.db").unlink()
        req = urllib.request.Request(
            f"{store.url}/v1/apps/{app}/environments/default/secrets",
            data=json.dumps({"name": "X", "value": "lost?"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a write into a deleted database was acknowledged")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert exc.headers["Retry-After"]
            assert json.loads(exc.read())["code"] == "database_file_missing"
        with urllib.request.urlopen(f"{store.url}/v1/health", timeout=10) as live:
            assert live.status == 200
        try:
            urllib.request.urlopen(f"{store.url}/v1/ready", timeout=10)
            raise AssertionError("ready with its database deleted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        store.stop()


def test_a_client_gone_mid_body_leaves_no_traceback(tmp_path: Path) -> None:
    """A client that sends half a body and hangs up: nobody to answer, nothing to log."""
    import socket

    data = tmp_path / "store"
    init_store(data)
    store = start_store(data)
    try:
        port = int(store.url.rsplit(":", 1)[1])
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(
                    b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 500\r\n\r\n{"grant_type": '
                )
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        assert HttpClient(store.url).call("GET", "/v1/health").status == 200
        time.sleep(0.3)
        assert "Traceback" not in store.logs()
    finally:
        store.stop()
