"""The first hour with the CLI, as a new user meets it (issue 15): each scenario runs the real
`loader` against a real store process and reads what the user would read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loader.httpclient import HttpClient
from tests.procs import (
    LOADER,
    Proc,
    create_token,
    init_store,
    loader_env,
    run_loader,
    spawn,
    start_store,
    wait_for_line,
)

CANARY = "first-hour-canary-value-7d41"


@dataclass
class Live:
    proc: Proc
    admin: str
    data: Path
    tmp: Path

    def cli(
        self, *args: str, stdin: bytes | None = None, token: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        base = {"LOADER_STORE_URL": self.proc.url, "LOADER_TOKEN": token or self.admin}
        return run_loader(*args, stdin=stdin, env=loader_env(**{**base, **env}))

    def client(self) -> HttpClient:
        return HttpClient(self.proc.url, token=self.admin)

    def get(self, path: str) -> Any:
        c = self.client()
        try:
            return c.call("GET", path).json()
        finally:
            c.close()

    def reveal(self, app: str | int, env: str = "default") -> dict[str, str]:
        return dict(self.get(f"/v1/apps/{app}/environments/{env}/rendered?mode=full")["secrets"])

    def audit(self, app: int, **query: str) -> list[dict[str, object]]:
        from urllib.parse import urlencode

        return list(self.get(f"/v1/apps/{app}/audit?{urlencode(query)}")["events"])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    data = tmp_path / "store"
    admin = init_store(data)
    live = Live(start_store(data), admin, data, tmp_path)
    try:
        yield live
    finally:
        live.proc.stop()  # the one running now (a test may have restarted it)


def _app(live: Live, name: str = "payments") -> int:
    out = live.cli("apps", "create", name, "--json")
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["id"])


def _one_line(out: subprocess.CompletedProcess[bytes]) -> str:
    err = out.stderr.decode()
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- 1 and 2: start-up refusals --------------------------------------------------------------


def test_address_in_use_is_one_line_before_anything_starts(live: Live) -> None:
    """1. hold a port; 2. the store, the agent and the webhook each refuse it with one line
    naming the address and exit 69; 3. none of them did anything first (the agent never said
    it was following the store)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    where = f"127.0.0.1:{port}"
    shm = Path("/dev/shm") / f"loader-first-hour-{os.getpid()}-{live.tmp.name}"
    shm.mkdir()
    try:
        env = loader_env(LOADER_STORE_URL=live.proc.url, LOADER_TOKEN=live.admin, LOADER_APP="1")
        runs = {
            "store": run_loader("store", "serve", "--data-dir", str(live.data), "--listen", where),
            "agent": run_loader(
                "agent", "--output", str(shm / "a.env"), "--listen", where, env=env
            ),
            "webhook": run_loader(
                "webhook",
                "--insecure",
                "--image",
                "i",
                "--store-url",
                "http://s:1",
                "--listen",
                where,
            ),
        }
    finally:
        busy.close()
        shutil.rmtree(shm, ignore_errors=True)
    for name, out in runs.items():
        assert out.returncode == 69, (name, out.stderr)
        line = _one_line(out)
        assert where in line and "in use" in line, (name, line)
        assert out.stdout == b"", name  # no "listening", no banner


def test_a_key_file_for_other_data_is_refused_at_start(live: Live, tmp_path: Path) -> None:
    """1. the store has data; 2. stop it and give it another store's key file; 3. serve exits
    78 with one line naming the key ids, before listening; 4. the right key serves again."""
    _app(live)
    live.proc.stop()
    key = live.data / "master.key"
    good = key.read_bytes()
    other = tmp_path / "other"
    init_store(other)
    key.write_bytes((other / "master.key").read_bytes())
    out = run_loader("store", "serve", "--data-dir", str(live.data), "--listen", "127.0.0.1:0")
    assert out.returncode == 78
    line = _one_line(out)
    assert "master key" in line and "is it this store's key file" in line
    assert b"listening" not in out.stdout
    assert good.decode().strip().rpartition(":")[2] not in line  # no key material
    key.write_bytes(good)
    live.proc = start_store(live.data)
    assert live.cli("apps", "list").returncode == 0


# -- 3 and 5: the parser ------------------------------------------------------------------------


def test_no_token_flag_no_abbreviations_and_no_echo(live: Live, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(live.admin)
    for argv in (
        ["secrets", "list", "--token", live.admin],
        ["secrets", "list", f"--token={live.admin}"],
        ["run", "--token", live.admin, "--", "true"],
    ):
        out = run_loader(*argv)
        assert out.returncode == 64, argv
        line = _one_line(out)
        assert "there is no --token flag" in line and "LOADER_TOKEN or --token-file" in line
        assert live.admin not in line
    # prefixes are not flags: --token-f is not --token-file
    out = run_loader("apps", "list", "--token-f", str(token_file))
    assert out.returncode == 64
    assert "unknown option --token-f" in _one_line(out)
    # nothing typed is echoed back unless it is a near miss of a real word
    out = run_loader("secrets", live.admin)
    assert out.returncode == 64 and live.admin not in _one_line(out)
    out = run_loader("secrets", "lst")
    assert "did you mean list" in _one_line(out)
    out = run_loader("secrets", "rollback", "A", "--version", live.admin)
    assert out.returncode == 64 and live.admin not in _one_line(out)
    # a token typed where a path or a name goes is not shown either
    out = run_loader("apps", "list", "--token-file", live.admin)
    assert out.returncode == 78 and live.admin not in _one_line(out)
    out = live.cli("secrets", "list", "--app", live.admin)
    assert out.returncode == 66 and live.admin not in _one_line(out)


def test_run_is_in_the_help_and_the_command_list() -> None:
    out = run_loader("--help")
    assert out.returncode == 0
    assert "\n    run " in out.stdout.decode()
    out = run_loader("xyzzy")
    assert out.returncode == 64
    line = _one_line(out)
    assert "choose from" in line and " run," in line and "xyzzy" not in line


# -- 7: values -----------------------------------------------------------------------------------


def test_values_come_from_stdin_only_and_empty_needs_allow_empty(live: Live) -> None:
    """1. an empty stdin is refused (65) and stores nothing; 2. --allow-empty stores ''; 3. a
    value given as an argument is refused with the reason, not echoed, not stored; 4. import -
    reads stdin."""
    app = _app(live)
    out = live.cli("secrets", "set", "EMPTY", "--app", str(app), stdin=b"")
    assert out.returncode == 65 and "--allow-empty" in _one_line(out)
    assert "EMPTY" not in live.reveal(app)
    out = live.cli("secrets", "set", "EMPTY", "--allow-empty", "--app", str(app), stdin=b"")
    assert out.returncode == 0, out.stderr
    assert live.reveal(app)["EMPTY"] == ""
    out = live.cli("secrets", "set", "ARG", CANARY, "--app", str(app), stdin=b"x")
    assert out.returncode == 64
    line = _one_line(out)
    assert "never from arguments" in line and CANARY not in line
    assert "ARG" not in live.reveal(app)
    out = live.cli(
        "secrets", "import", "-", "--app", "payments", stdin=f"P={CANARY}\nQ=2\n".encode()
    )
    assert out.returncode == 0, out.stderr
    assert CANARY not in out.stdout.decode() + out.stderr.decode()
    values = live.reveal(app)
    assert values["P"] == CANARY and values["Q"] == "2"


# -- 8: messages ------------------------------------------------------------------------------


def test_store_init_without_data_dir_says_where(tmp_path: Path) -> None:
    db = tmp_path / "db" / "loader.db"
    db.parent.mkdir()
    key = tmp_path / "key"
    env = loader_env(LOADER_DATABASE_URL=f"sqlite:///{db}", LOADER_MASTER_KEY_FILE=str(key))
    out = run_loader("store", "init", env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "None" not in text and f"master key in {key}" in text
    assert "LOADER_DATABASE_URL" in text


def test_https_against_plain_http_is_one_clear_line(live: Live, tmp_path: Path) -> None:
    https = live.proc.url.replace("http://", "https://")
    shm = Path("/dev/shm") / f"loader-tls-{os.getpid()}-{tmp_path.name}"
    shm.mkdir()
    try:
        cli = live.cli("apps", "list", LOADER_STORE_URL=https)
        once = run_loader(
            "render",
            "--once",
            "--output",
            str(shm / "e"),
            "--timeout",
            "0.5",
            env=loader_env(LOADER_STORE_URL=https, LOADER_TOKEN=live.admin, LOADER_APP="1"),
        )
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    assert cli.returncode == 69
    assert "does not speak TLS" in _one_line(cli) and "WRONG_VERSION" not in _one_line(cli)
    assert once.returncode == 69
    last = once.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("loader: ") and "does not speak TLS" in last


def test_unknown_loader_variables_are_warned_about(live: Live) -> None:
    out = live.cli("apps", "list", LOADER_ENV="prod", LOADER_STORE_PORT="tcp://10.0.0.1:8700")
    assert out.returncode == 0
    err = out.stderr.decode()
    assert "LOADER_ENV is not a loader setting" in err and "LOADER_ENVIRONMENT" in err
    assert "LOADER_STORE_PORT" not in err  # a Kubernetes service link, not a typo
    out = run_loader(
        "run", "--", "true", env=loader_env(LOADER_FROM_FILE="/dev/null", LOADER_ONYL="A")
    )
    assert "LOADER_ONYL is not a loader setting" in out.stderr.decode()
    assert "LOADER_ONLY" in out.stderr.decode()


def test_debug_log_shows_requests_and_decisions_never_values(live: Live) -> None:
    app = _app(live, "dbg")
    out = live.cli(
        "secrets",
        "set",
        "DBG_SECRET",
        "--app",
        "dbg",
        stdin=CANARY.encode(),
        LOADER_LOG_LEVEL="debug",
    )
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert "GET /v1/apps -> 200" in err  # the name lookup
    assert "app name resolved to id" in err
    assert "POST /v1/apps/{appId}/environments/{env}/secrets -> 200" in err
    assert CANARY not in err and live.admin not in err
    assert f"/v1/apps/{app}/" not in err  # route templates, not paths


# -- 9: audit and tokens ----------------------------------------------------------------------


def test_audit_has_one_vocabulary_and_tokens_are_validated(live: Live) -> None:
    app = _app(live)
    weak = create_token(live.data, "secrets:read", app)
    denied = live.cli("envs", "create", "qa", "--app", str(app), token=weak)
    assert denied.returncode == 77
    events = live.audit(app)
    actions = {e["action"] for e in events}
    assert "create_environment" in actions  # the refusal, under the same name as the write
    assert all(str(a).islower() for a in actions), actions
    assert live.cli("audit", "--app", "payments", "--action", "bogus").returncode == 64
    out = live.cli("audit", "--app", "payments", "--action", "create_environment", "--json")
    assert out.returncode == 0
    assert [e["outcome"] for e in json.loads(out.stdout)["events"]] == ["forbidden"]

    d = ["--data-dir", str(live.data)]
    bad_env = run_loader("store", "token", "create", *d, "--scopes", "*", "--env", "nope")
    assert bad_env.returncode == 66 and "nope" in _one_line(bad_env)
    bad_app = run_loader("store", "token", "create", *d, "--scopes", "*", "--app", "99")
    assert bad_app.returncode == 66
    by_name = run_loader(
        "store",
        "token",
        "create",
        *d,
        "--scopes",
        "secrets:read",
        "--app",
        "payments",
        "--env",
        "default",
        "--ttl",
        "1h",
        "--description",
        "ci reader",
        "--json",
    )
    assert by_name.returncode == 0, by_name.stderr
    listed = run_loader("store", "token", "list", *d)
    row = next(r for r in listed.stdout.decode().splitlines() if "ci reader" in r)
    assert f" {app} " in row and "default" in row and "active" in row and "never" not in row


# -- 11: names for ids ---------------------------------------------------------------------------


def test_app_names_work_wherever_ids_do(live: Live, tmp_path: Path) -> None:
    app = _app(live)
    assert live.cli("secrets", "set", "N", "--app", "payments", stdin=b"by-name").returncode == 0
    assert live.reveal(app) == {"N": "by-name"}
    listed = live.cli("secrets", "list", "--app", "payments", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)["secrets"]] == ["N"]
    missing = live.cli("secrets", "list", "--app", "nope")
    assert missing.returncode == 66 and "no app named 'nope'" in _one_line(missing)
    reader = create_token(live.data, "secrets:reveal,apps:read", app)
    shm = Path("/dev/shm") / f"loader-names-{os.getpid()}-{tmp_path.name}"
    shm.mkdir()
    try:
        env = loader_env(LOADER_STORE_URL=live.proc.url, LOADER_TOKEN=reader, LOADER_APP="payments")
        once = run_loader(
            "render", "--once", "--output", str(shm / "e"), env={**env, "LOADER_LOG_LEVEL": "debug"}
        )
        assert once.returncode == 0, once.stderr
        assert "N=by-name\n" in (shm / "e").read_text()
        debug = once.stderr.decode()  # each request by route template, never a value
        assert "GET /v1/apps -> 200" in debug and "app payments is app id" in debug
        assert "GET /v1/apps/{appId}/environments/{env}/rendered -> 200" in debug
        assert "by-name" not in debug and reader not in debug
        ran = run_loader("run", "--", "sh", "-c", 'printf %s "$N"', env=env)
        assert ran.returncode == 0 and ran.stdout == b"by-name", ran.stderr
        no_lookup = create_token(live.data, "secrets:reveal", app)
        refused = run_loader(
            "render", "--once", "--output", str(shm / "f"), env={**env, "LOADER_TOKEN": no_lookup}
        )
        assert refused.returncode == 77
        assert "apps:read" in refused.stderr.decode().strip().splitlines()[-1]
    finally:
        shutil.rmtree(shm, ignore_errors=True)


# -- 12: the missing commands --------------------------------------------------------------------


def test_versions_rollback_reveal_download_and_deletes(live: Live, tmp_path: Path) -> None:
    """1. three versions; 2. versions lists them without values; 3. rollback restores v1 as v4;
    4. get --reveal prints it (audited as a reveal), a read-only token is refused; 5. download
    writes the agent's format 0600 on tmpfs, refuses disk and needs --reveal for stdout;
    6. envs/apps delete ask for --yes off a TTY and then delete."""
    app = _app(live)
    for value in ("first-value-x1", "two", CANARY):
        assert (
            live.cli("secrets", "set", "S", "--app", "payments", stdin=value.encode()).returncode
            == 0
        )
    versions = live.cli("secrets", "versions", "S", "--app", "payments")
    assert versions.returncode == 0 and CANARY not in versions.stdout.decode()
    assert [line.split()[0] for line in versions.stdout.decode().splitlines()[1:]] == [
        "3",
        "2",
        "1",
    ]
    rolled = live.cli("secrets", "rollback", "S", "--version", "1", "--app", "payments")
    assert rolled.returncode == 0 and "now version 4" in rolled.stdout.decode()
    assert live.reveal(app)["S"] == "first-value-x1"

    shown = live.cli("secrets", "get", "S", "--reveal", "--app", "payments")
    assert shown.returncode == 0 and shown.stdout == b"first-value-x1\n"
    reveals = live.audit(app, action="reveal", name="S")
    assert reveals and reveals[0]["outcome"] == "ok"
    reader = create_token(live.data, "secrets:read", app)
    refused = live.cli("secrets", "get", "S", "--reveal", "--app", str(app), token=reader)
    assert refused.returncode == 77
    masked = live.cli("secrets", "get", "S", "--app", str(app), token=reader)
    assert masked.returncode == 0 and b"first-value-x1" not in masked.stdout

    shm = Path("/dev/shm") / f"loader-dl-{os.getpid()}-{tmp_path.name}"
    shm.mkdir()
    try:
        target = shm / "app.env"
        dl = live.cli(
            "secrets", "download", "--format", "shell", "--output", str(target), "--app", "payments"
        )
        assert dl.returncode == 0, dl.stderr
        assert target.stat().st_mode & 0o777 == 0o600
        got = subprocess.run(
            ["bash", "-c", f'. "{target}"; printf %s "$S"'], capture_output=True, check=True
        )
        assert got.stdout == b"first-value-x1"
        disk = live.cli(
            "secrets",
            "download",
            "--format",
            "dotenv",
            "--output",
            str(tmp_path / "d.env"),
            "--app",
            "payments",
        )
        assert disk.returncode == 78 and not (tmp_path / "d.env").exists()
        to_stdout = live.cli(
            "secrets", "download", "--format", "json", "--output", "-", "--app", "payments"
        )
        assert to_stdout.returncode == 64 and to_stdout.stdout == b""
        revealed = live.cli(
            "secrets",
            "download",
            "--format",
            "json",
            "--output",
            "-",
            "--reveal",
            "--app",
            "payments",
        )
        assert revealed.returncode == 0 and json.loads(revealed.stdout) == {"S": "first-value-x1"}
    finally:
        shutil.rmtree(shm, ignore_errors=True)

    assert live.cli("envs", "create", "staging", "--app", "payments").returncode == 0
    unasked = live.cli("envs", "delete", "staging", "--app", "payments", stdin=b"y\n")
    assert unasked.returncode == 64 and "--yes" in _one_line(unasked)
    assert live.cli("envs", "delete", "staging", "--app", "payments", "--yes").returncode == 0
    assert live.cli("envs", "delete", "staging", "--app", "payments", "--yes").returncode == 66
    assert live.cli("apps", "delete", "payments").returncode == 64
    gone = live.cli("apps", "delete", "payments", "--yes")
    assert gone.returncode == 0 and f"deleted app {app}" in gone.stdout.decode()
    assert live.cli("apps", "list", "--json").stdout.strip() == b'{"apps":[]}'


def test_delete_confirms_on_a_terminal(live: Live) -> None:
    """On a TTY the delete asks; anything but y keeps the app, y deletes it."""
    app = _app(live)
    script = (
        "import os, pty, sys\n"
        "pid, fd = pty.fork()\n"
        "if pid == 0:\n"
        "    argv = [sys.executable, '-m', 'loader', 'apps', 'delete', sys.argv[2]]\n"
        "    os.execvp(sys.executable, argv)\n"
        "out = b''\n"
        "while b'[y/N]' not in out:\n"
        "    out += os.read(fd, 1024)\n"
        "os.write(fd, sys.argv[1].encode() + b'\\n')\n"
        "while True:\n"
        "    try:\n"
        "        chunk = os.read(fd, 1024)\n"
        "    except OSError:\n"
        "        break\n"
        "    if not chunk:\n"
        "        break\n"
        "    out += chunk\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.stdout.write(out.decode(errors='replace'))\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    env = loader_env(LOADER_STORE_URL=live.proc.url, LOADER_TOKEN=live.admin)
    no = subprocess.run(
        [sys.executable, "-c", script, "n", str(app)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert no.returncode == 64 and "not confirmed" in no.stdout.decode()
    assert live.cli("apps", "list", "--json").stdout.count(b'"payments"') == 1
    yes = subprocess.run(
        [sys.executable, "-c", script, "y", str(app)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert yes.returncode == 0, yes.stdout
    assert b"payments" not in live.cli("apps", "list", "--json").stdout


# -- 13: completion -------------------------------------------------------------------------------


def test_bash_completion_loads_and_completes_commands(tmp_path: Path) -> None:
    out = run_loader("completion", "bash")
    assert out.returncode == 0, out.stderr
    script = tmp_path / "loader.bash"
    script.write_bytes(out.stdout)
    probe = f"""
source {script}
complete -p loader
words() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ));
  COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=();
  fn=$(complete -p loader | sed -E 's/.*-F ([^ ]+) .*/\\1/'); "$fn" loader "${{COMP_WORDS[-1]}}";
  printf '%s\\n' "${{COMPREPLY[@]}}" | sort | tr '\\n' ' '; echo; }}
words loader sec
words loader secrets ""
words loader secrets set --allow
"""
    res = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("complete ") and " loader" in lines[0]
    assert lines[1].split() == ["secrets"]
    assert {"set", "get", "list", "versions", "rollback", "download"} <= set(lines[2].split())
    assert lines[3].split() == ["--allow-empty"]
    zsh = run_loader("completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith(b"#compdef loader")
    if shutil.which("zsh"):
        check = subprocess.run(
            ["zsh", "-n", "-c", zsh.stdout.decode()], capture_output=True, check=False
        )
        assert check.returncode == 0, check.stderr


# -- 4 and 10: loader dev ------------------------------------------------------------------------


def test_dev_banner_commands_work_and_moved_ports_are_said(tmp_path: Path) -> None:
    """1. hold the agent's port; 2. `loader dev` says the agent moved; 3. the banner's
    loader command exists as printed; 4. each re-render is printed once; 5. the seed writes
    are in the audit log."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    env = loader_env(PATH="/usr/bin:/bin")  # loader is not on PATH, as after the README's set-up
    proc = spawn(
        [*LOADER, "dev", "--port", "0", "--agent-port", str(port)], tmp_path / "dev.log", env
    )
    try:
        url = wait_for_line(proc, r"Store API:\s+(http://\S+)")
        token = wait_for_line(proc, r"Admin token:\s+(lt_\S+)")
        assert f"(port {port} was taken)" in wait_for_line(proc, r"(Agent API:.*)")
        command = wait_for_line(proc, r"^\s+(\S+) secrets list$")
        assert Path(command).is_absolute() and os.access(command, os.X_OK), command
        assert "activate" in wait_for_line(proc, r"(not on your PATH.*)")
        listed = subprocess.run(
            [command, "secrets", "list"],
            env=loader_env(LOADER_STORE_URL=url, LOADER_TOKEN=token, LOADER_APP="demo"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert b"GREETING" in listed.stdout
        wait_for_line(proc, r"\[demo app pid \d+\] started")
        client = HttpClient(url, token=token)
        apps = client.call("GET", "/v1/apps").json()["apps"]
        app = apps[0]["id"]
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "GREETING", "value": "salut"})
        revision = wait_for_line(proc, r"\[agent\] revision (\d+): rendered .*GREETING")
        events = client.call("GET", f"/v1/apps/{app}/audit?action=upsert_secret").json()
        names = sorted(n for e in events["events"] for n in e["names"])
        assert names == ["API_KEY", "DATABASE_URL", "GREETING", "GREETING"]
        client.close()
    finally:
        code = proc.stop(__import__("signal").SIGINT)
        busy.close()
    text = proc.output() + proc.logs()
    assert code == 0, proc.logs()
    assert text.count(f"revision {revision}:") == 1, text
