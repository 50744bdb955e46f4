"""The management CLI (`loader apps|envs|secrets`) against a real store process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from tests.procs import Proc, create_token, init_store, loader_env, run_loader, start_store

CANARY = "cli-canary-5c1e-value"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Proc, str]]:
    data = tmp_path / "store"
    token = init_store(data)
    proc = start_store(data)
    try:
        yield proc, token
    finally:
        proc.stop()


def cli(proc: Proc, token: str, *args: str, stdin: bytes | None = None, **env: str):  # type: ignore[no-untyped-def]
    return run_loader(
        *args, stdin=stdin, env=loader_env(LOADER_STORE_URL=proc.url, LOADER_TOKEN=token, **env)
    )


def test_cli_apps_and_secrets_round_trip(live: tuple[Proc, str], tmp_path: Path) -> None:
    """1. create an app; 2. set a secret from stdin; 3. list/get show no value; 4. the store has
    it; 5. delete it."""
    proc, token = live
    created = cli(proc, token, "apps", "create", "payments", "--json")
    assert created.returncode == 0, created.stderr
    app = json.loads(created.stdout)
    assert set(app) >= {"id", "name"} and app["name"] == "payments"
    app_id = str(app["id"])

    set_ = cli(
        proc, token, "secrets", "set", "DB_PASSWORD", "--app", app_id, stdin=CANARY.encode() + b"\n"
    )
    assert set_.returncode == 0, set_.stderr
    assert CANARY not in set_.stdout.decode() + set_.stderr.decode()

    listed = cli(proc, token, "secrets", "list", "--app", app_id, "--json")
    got = cli(proc, token, "secrets", "get", "DB_PASSWORD", "--app", app_id)
    for out in (listed, got):
        assert out.returncode == 0
        assert CANARY not in out.stdout.decode()
    assert [s["name"] for s in json.loads(listed.stdout)["secrets"]] == ["DB_PASSWORD"]

    client = HttpClient(proc.url, token=token)
    rendered = client.call("GET", f"/v1/apps/{app_id}/environments/default/rendered?mode=full")
    assert rendered.json()["secrets"] == {"DB_PASSWORD": CANARY}  # trailing newline removed

    env_app = cli(proc, token, "envs", "create", "prod", "--app", app_id, "--json")
    assert env_app.returncode == 0
    prod = cli(proc, token, "secrets", "set", "X", "--app", app_id, "--env", "prod", stdin=b"p")
    assert prod.returncode == 0
    deleted = cli(proc, token, "secrets", "delete", "DB_PASSWORD", "--app", app_id)
    assert deleted.returncode == 0
    again = cli(proc, token, "secrets", "get", "DB_PASSWORD", "--app", app_id)
    assert again.returncode == 66
    client.close()


def test_cli_import_reads_dotenv_and_refuses_bad_files_whole(
    live: tuple[Proc, str], tmp_path: Path
) -> None:
    proc, token = live
    app_id = str(json.loads(cli(proc, token, "apps", "create", "imp", "--json").stdout)["id"])
    good = tmp_path / "good.env"
    good.write_text(
        "# comment\nexport A=plain\nB='single ${A}'\nC=\"multi\\nline\"\nD=with # comment\n"
    )
    out = cli(proc, token, "secrets", "import", str(good), "--app", app_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["imported"] == ["A", "B", "C", "D"]
    client = HttpClient(proc.url, token=token)
    values = client.call("GET", f"/v1/apps/{app_id}/environments/default/rendered?mode=full")
    assert values.json()["secrets"] == {
        "A": "plain",
        "B": "single plain",
        "C": "multi\nline",
        "D": "with",
    }
    bad = tmp_path / "bad.env"
    bad.write_text("E=ok\nbad-name=x\nF\n'unterminated\n")
    out = cli(proc, token, "secrets", "import", str(bad), "--app", app_id)
    assert out.returncode == 65  # bad input data
    assert b"line 2" in out.stderr and b"line 3" in out.stderr
    after = client.call("GET", f"/v1/apps/{app_id}/environments/default/rendered?mode=full")
    assert "E" not in after.json()["secrets"]
    client.close()


INTERPOLATED = (
    "HOST=db.internal\n"
    'URL="postgres://app@${HOST}:5432/x"\n'
    "FALLBACK=${MISSING:-none}\n"
    "SQ='${HOST} in single quotes'\n"
    "RAW=pa$$word\n"
)


def _run_dump(env_file: Path, *flags: str):  # type: ignore[no-untyped-def]
    names = ["HOST", "URL", "FALLBACK", "SQ", "RAW"]
    code = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    return run_loader("run", *flags, "--from-file", str(env_file), "--", "python3", "-c", code)


def test_import_and_run_read_a_dotenv_file_the_same(live: tuple[Proc, str], tmp_path: Path) -> None:
    """1. secrets import and run --from-file give the same values for a file with ${VAR}
    references (python-dotenv's interpolation, within the file); 2. the store renders them in
    the default dotenv format; 3. --literal on both keeps ${...} as written; 4. a reference to
    a name not defined above is refused by both (exit 65), naming the line."""
    proc, token = live
    app_id = str(json.loads(cli(proc, token, "apps", "create", "interp", "--json").stdout)["id"])
    env_file = tmp_path / "app.env"
    env_file.write_text(INTERPOLATED)
    expected = {
        "HOST": "db.internal",
        "URL": "postgres://app@db.internal:5432/x",
        "FALLBACK": "none",
        "SQ": "db.internal in single quotes",
        "RAW": "pa$$word",
    }
    imported = cli(proc, token, "secrets", "import", str(env_file), "--app", app_id)
    assert imported.returncode == 0, imported.stderr
    ran = _run_dump(env_file)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == expected
    client = HttpClient(proc.url, token=token)
    base = f"/v1/apps/{app_id}/environments"
    assert client.call("GET", f"{base}/default/rendered?mode=full").json()["secrets"] == expected
    dotenv = client.call("GET", f"{base}/default/rendered?mode=full&format=dotenv")
    assert dotenv.status == 200

    assert cli(proc, token, "envs", "create", "lit", "--app", app_id).returncode == 0
    literal = cli(
        proc,
        token,
        "secrets",
        "import",
        "--literal",
        str(env_file),
        "--app",
        app_id,
        "--env",
        "lit",
    )
    assert literal.returncode == 0, literal.stderr
    stored = client.call("GET", f"{base}/lit/rendered?mode=full").json()["secrets"]
    ran = _run_dump(env_file, "--literal")
    assert json.loads(ran.stdout) == stored
    assert stored["URL"] == "postgres://app@${HOST}:5432/x"
    assert stored["SQ"] == "${HOST} in single quotes"

    undefined = tmp_path / "undefined.env"
    undefined.write_text("A=1\nB=${NOPE}/x\n")
    refused = cli(proc, token, "secrets", "import", str(undefined), "--app", app_id)
    assert refused.returncode == 65
    assert b"line 2: a ${...} reference names no variable defined above it" in refused.stderr
    ran = _run_dump(undefined)
    assert ran.returncode == 65
    assert b"line 2: a ${...} reference" in ran.stderr
    assert b"NOPE" not in refused.stderr + ran.stderr
    client.close()


def test_import_and_run_help_state_the_rule() -> None:
    for args in (["secrets", "import", "--help"], ["run", "--help"]):
        out = run_loader(*args)
        assert out.returncode == 0
        text = " ".join(out.stdout.decode().split())
        assert "in the same file (python-dotenv's default interpolation" in text
        assert "--literal" in text


def test_cli_exit_codes(live: tuple[Proc, str], tmp_path: Path) -> None:
    proc, token = live
    assert cli(proc, "lt_000000000000_bad", "apps", "list").returncode == 77
    weak = create_token(tmp_path / "store", "secrets:read")
    denied = cli(proc, weak, "apps", "create", "x")
    assert denied.returncode == 77
    assert weak not in denied.stderr.decode()
    unreachable = run_loader(
        "apps", "list", env=loader_env(LOADER_STORE_URL="http://127.0.0.1:9", LOADER_TOKEN=token)
    )
    assert unreachable.returncode == 69
    assert token not in unreachable.stderr.decode()
    no_token = run_loader("apps", "list", env=loader_env(LOADER_STORE_URL=proc.url))
    assert no_token.returncode == 78
    no_app = cli(proc, token, "secrets", "list")
    assert no_app.returncode == 78
    assert cli(proc, token, "secrets", "set", "bad-name", "--app", "1", stdin=b"x").returncode == 64
    assert cli(proc, token, "secrets", "list", "--app", "4242").returncode == 66
    assert run_loader("secrets").returncode == 64


def test_cli_token_file(live: tuple[Proc, str], tmp_path: Path) -> None:
    proc, token = live
    path = tmp_path / "token"
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    out = run_loader(
        "apps",
        "list",
        "--json",
        "--token-file",
        str(path),
        env=loader_env(LOADER_STORE_URL=proc.url),
    )
    assert out.returncode == 0, out.stderr
