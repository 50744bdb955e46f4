"""One exit-code table, enforced: every command walked through each class of mistake that can
happen to it (usage, bad data, not found, unreachable, exists, temporary, refused,
configuration), against real store processes, as a user runs it. Each answer is the table's
code with one line on stderr, no traceback, and no echo of the token.

Also: the README's exit-code table is the code's table (``loader.errors.EXIT_CODES``).
"""

from __future__ import annotations

import re
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loader.cli import build_parser
from loader.errors import EXIT_CODES
from loader.httpclient import HttpClient
from tests.procs import (
    Proc,
    create_token,
    free_port,
    init_store,
    loader_env,
    run_loader,
    start_store,
)

ROOT = Path(__file__).resolve().parents[2]
CODE = {name: code for code, name, _ in EXIT_CODES}
CANARY_TOKEN = "lt_c0ffee000000_exitcodecanarytokenvalue"


@dataclass
class World:
    tmp: Path
    store: Proc
    admin: str
    weak: str  # secrets:read, bound to the app
    app: int
    data: Path
    limited: Proc
    limited_token: str
    busy: socket.socket  # a port somebody holds
    wrong_key_dir: Path
    shm: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def busy_port(self) -> int:
        return int(self.busy.getsockname()[1])

    def env(self, kind: str) -> dict[str, str]:
        base = {
            "LOADER_STORE_URL": self.store.url,
            "LOADER_TOKEN": self.admin,
            "LOADER_APP": str(self.app),
        }
        if kind == "unreachable":
            base["LOADER_STORE_URL"] = f"http://127.0.0.1:{free_port()}"
        elif kind == "temporary":
            base.update(
                LOADER_STORE_URL=self.limited.url, LOADER_TOKEN=self.limited_token, LOADER_APP="1"
            )
        elif kind == "refused":
            base["LOADER_TOKEN"] = CANARY_TOKEN
        elif kind == "weak":
            base["LOADER_TOKEN"] = self.weak
        elif kind == "configuration":
            base["LOADER_STORE_URL"] = "127.0.0.1:8700"  # no scheme
        return loader_env(**base)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("exit")
    data = tmp / "store"
    admin = init_store(data)
    store = start_store(data)
    limited_data = tmp / "limited"
    limited_admin = init_store(limited_data)
    limited = start_store(limited_data, "--rate-limit", "0.001/s", "--rate-burst", "1")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    shm: Path | None = None
    try:
        client = HttpClient(store.url, token=admin)
        app = int(client.call("POST", "/v1/apps", {"name": "walk"}).json()["id"])
        client.call("POST", f"/v1/apps/{app}/environments", {"name": "prod"})
        secrets = f"/v1/apps/{app}/environments/default/secrets"
        client.call("POST", secrets, {"name": "A", "value": "line one\nline two"})
        client.close()
        weak = create_token(data, "secrets:read", app)
        limited_token = create_token(limited_data, "*")
        # One request from each of the token's budgets (requests, writes, reveals): every
        # next request is 429 for the next 1000 s.
        drain = HttpClient(limited.url, token=limited_token)
        drain.call("POST", "/v1/apps", {"name": "limited"})
        drain.request("GET", "/v1/apps/1/environments/default/rendered?mode=full")
        drain.request("GET", "/v1/apps")
        drain.close()
        del limited_admin
        wrong = tmp / "wrong-key"  # a store with data, then another store's key file
        wrong_admin = init_store(wrong)
        wrong_store = start_store(wrong)
        seed = HttpClient(wrong_store.url, token=wrong_admin)
        seed.call("POST", "/v1/apps", {"name": "x"})
        seed.close()
        wrong_store.stop()
        other = tmp / "other"
        init_store(other)
        (wrong / "master.key").write_bytes((other / "master.key").read_bytes())
        backup = run_loader(
            "store", "backup", "--data-dir", str(data), "--output", str(tmp / "walk.db")
        )
        assert backup.returncode == 0, backup.stderr
        # Unique across processes: another test run on the machine has its own "exit0" too.
        shm = Path(tempfile.mkdtemp(prefix="loader-exit-", dir="/dev/shm"))
        files = {
            "bad_env": tmp / "bad.env",
            "latin1": tmp / "latin1.env",
            "missing": tmp / "missing.env",
            "good_env": tmp / "good.env",
            "key": tmp / "new.key",
        }
        files["bad_env"].write_text("GOOD=1\nbad-name=2\n")
        files["latin1"].write_bytes(b"A=caf\xe9\n")
        files["good_env"].write_text("B=2\n")
        yield World(
            tmp, store, admin, weak, app, data, limited, limited_token, busy, wrong, shm, files
        )
    finally:
        busy.close()
        store.stop()
        limited.stop()
        import shutil

        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)


# (command, class, argv, env kind, stdin). Every command appears with each class that can
# happen to it; the walk below checks no command of the parser is missing.
def cases(w: World) -> list[tuple[str, str, list[str], str, bytes | None]]:
    d = ["--data-dir", str(w.data)]
    shm = w.shm
    f = w.files
    c: list[tuple[str, str, list[str], str, bytes | None]] = []

    def client(command: str, argv: list[str], *, stdin: bytes | None = None) -> None:
        """The classes every store client can meet, with the same arguments."""
        c.append((command, "unreachable", argv, "unreachable", stdin))
        c.append((command, "temporary", argv, "temporary", stdin))
        c.append((command, "refused", argv, "refused", stdin))
        c.append((command, "configuration", argv, "configuration", stdin))

    def add(
        command: str, klass: str, argv: list[str], kind: str = "ok", stdin: bytes | None = None
    ) -> None:
        c.append((command, klass, argv, kind, stdin))

    add("loader", "usage", ["nosuchcommand"])
    # apps
    client("apps create", ["apps", "create", "fresh"])
    add("apps create", "usage", ["apps", "create"])
    add("apps create", "exists", ["apps", "create", "walk"])
    client("apps list", ["apps", "list"])
    add("apps list", "usage", ["apps", "list", "extra"])
    client("apps delete", ["apps", "delete", "walk", "--yes"])
    add("apps delete", "usage", ["apps", "delete"])
    add("apps delete", "not found", ["apps", "delete", "nosuchapp", "--yes"])
    add("apps delete", "usage", ["apps", "delete", "walk"], "ok", b"")  # no TTY, no --yes
    # envs
    client("envs create", ["envs", "create", "qa"])
    add("envs create", "usage", ["envs", "create"])
    add("envs create", "exists", ["envs", "create", "prod"])
    add("envs create", "not found", ["envs", "create", "qa", "--app", "4242"])
    client("envs list", ["envs", "list"])
    add("envs list", "usage", ["envs", "list", "--bogus"])
    add("envs list", "not found", ["envs", "list", "--app", "nosuchapp"])
    client("envs delete", ["envs", "delete", "prod", "--yes"])
    add("envs delete", "usage", ["envs", "delete"])
    add("envs delete", "not found", ["envs", "delete", "nope", "--yes"])
    # secrets
    client("secrets set", ["secrets", "set", "B"], stdin=b"v")
    add("secrets set", "usage", ["secrets", "set", "B", "the-value"], stdin=b"")
    add("secrets set", "bad input data", ["secrets", "set", "B"], stdin=b"")
    add("secrets set", "bad input data", ["secrets", "set", "B"], stdin=b"\xff\xfe")
    add("secrets set", "not found", ["secrets", "set", "B", "--app", "4242"], stdin=b"v")
    client("secrets get", ["secrets", "get", "A"])
    add("secrets get", "usage", ["secrets", "get"])
    add("secrets get", "not found", ["secrets", "get", "NOPE"])
    add("secrets get", "refused", ["secrets", "get", "A", "--reveal"], "weak")
    client("secrets list", ["secrets", "list"])
    add("secrets list", "usage", ["secrets", "list", "--token", CANARY_TOKEN])
    add("secrets list", "not found", ["secrets", "list", "--env", "nope"])
    client("secrets delete", ["secrets", "delete", "A"])
    add("secrets delete", "usage", ["secrets", "delete"])
    add("secrets delete", "not found", ["secrets", "delete", "NOPE"])
    client("secrets import", ["secrets", "import", str(f["good_env"])])
    add("secrets import", "usage", ["secrets", "import"])
    add("secrets import", "bad input data", ["secrets", "import", str(f["bad_env"])])
    add("secrets import", "bad input data", ["secrets", "import", str(f["latin1"])])
    add("secrets import", "not found", ["secrets", "import", str(f["missing"])])
    client("secrets versions", ["secrets", "versions", "A"])
    add("secrets versions", "usage", ["secrets", "versions"])
    add("secrets versions", "not found", ["secrets", "versions", "NOPE"])
    client("secrets rollback", ["secrets", "rollback", "A", "--version", "1"])
    add("secrets rollback", "usage", ["secrets", "rollback", "A"])
    add("secrets rollback", "not found", ["secrets", "rollback", "A", "--version", "99"])
    out = ["secrets", "download", "--format", "dotenv", "--output", str(shm / "d.env")]
    client("secrets download", out)
    add("secrets download", "usage", [*out[:-1], "-"])
    add(
        "secrets download",
        "bad input data",
        ["secrets", "download", "--format", "docker", "--output", str(shm / "d.docker")],
    )
    add("secrets download", "not found", [*out, "--names", "NOPE"])
    add("secrets download", "refused", out, "weak")
    add(
        "secrets download",
        "configuration",
        ["secrets", "download", "--format", "dotenv", "--output", str(w.tmp / "disk.env")],
    )
    # audit
    client("audit", ["audit"])
    add("audit", "usage", ["audit", "--limit", "0"])
    add("audit", "not found", ["audit", "--app", "4242"])
    add("audit", "refused", ["audit"], "weak")
    # the store, on its directory
    add("store init", "usage", ["store", "init", "--bogus"])
    add("store init", "configuration", ["store", "init"])
    add("store serve", "usage", ["store", "serve", *d, "--listen"])
    add(
        "store serve", "unreachable", ["store", "serve", *d, "--listen", f"127.0.0.1:{w.busy_port}"]
    )
    add(
        "store serve",
        "configuration",
        ["store", "serve", "--data-dir", str(w.wrong_key_dir), "--listen", "127.0.0.1:0"],
    )
    add("store migrate", "usage", ["store", "migrate", "extra"])
    add("store migrate", "configuration", ["store", "migrate"])
    add("store token create", "usage", ["store", "token", "create", *d])
    add(
        "store token create",
        "not found",
        ["store", "token", "create", *d, "--scopes", "*", "--app", "nosuchapp"],
    )
    add(
        "store token create",
        "not found",
        ["store", "token", "create", *d, "--scopes", "*", "--env", "nope"],
    )
    add("store token create", "configuration", ["store", "token", "create", "--scopes", "*"])
    add("store token list", "usage", ["store", "token", "list", *d, "extra"])
    add("store token list", "configuration", ["store", "token", "list"])
    add("store token revoke", "usage", ["store", "token", "revoke", *d])
    add("store token revoke", "not found", ["store", "token", "revoke", *d, "lt_000000000000"])
    add("store token revoke", "configuration", ["store", "token", "revoke", "lt_000000000000"])
    add("store client create", "usage", ["store", "client", "create", *d])
    add(
        "store client create",
        "not found",
        ["store", "client", "create", *d, "--scopes", "*", "--app", "4242"],
    )
    add("store client create", "configuration", ["store", "client", "create", "--scopes", "*"])
    trust = ["store", "trust", "create", *d, "--issuer", "https://k8s", "--audience", "loader"]
    trust += ["--jwks-url", "https://k8s/jwks", "--scopes", "secrets:reveal"]
    add("store trust create", "usage", trust)  # no claim condition
    add("store trust create", "usage", [*trust, "--claim", "novalue"])
    add("store trust create", "not found", [*trust, "--k8s-namespace", "x", "--app", "nope"])
    add("store trust create", "configuration", [*trust[:3], *trust[5:], "--k8s-namespace", "x"])
    add("store trust list", "usage", ["store", "trust", "list", *d, "extra"])
    add("store trust list", "configuration", ["store", "trust", "list"])
    add("store trust delete", "usage", ["store", "trust", "delete", *d])
    add("store trust delete", "not found", ["store", "trust", "delete", *d, "tp_000000000000"])
    add("store trust delete", "configuration", ["store", "trust", "delete", "tp_000000000000"])
    add("store rotate-key", "usage", ["store", "rotate-key", *d])
    add(
        "store rotate-key",
        "configuration",
        ["store", "rotate-key", "--new-key-file", str(f["key"])],
    )
    add("store remove-key", "usage", ["store", "remove-key", *d])
    add("store remove-key", "not found", ["store", "remove-key", *d, "k0000000000000000"])
    add("store remove-key", "configuration", ["store", "remove-key", "k0000000000000000"])
    walk, key = w.tmp / "walk.db", str(w.data / "master.key")
    add("store backup", "usage", ["store", "backup", *d])
    add("store backup", "exists", ["store", "backup", *d, "--output", str(f["good_env"])])
    add(
        "store backup",
        "not found",
        ["store", "backup", "--data-dir", str(w.tmp / "nostore"), "--output", str(w.tmp / "x")],
    )
    add("store backup", "configuration", ["store", "backup", "--output", str(w.tmp / "y.db")])
    add("store restore", "usage", ["store", "restore", *d])
    add("store restore", "not found", ["store", "restore", str(f["missing"]), *d])
    add("store restore", "configuration", ["store", "restore", str(walk), *d, "--force"])
    into = f"sqlite:///{w.wrong_key_dir / 'loader.db'}"
    copy = ["store", "copy", "--master-key-file", key]
    add("store copy", "usage", [*copy, "--from", f"sqlite:///{walk}"])
    add("store copy", "exists", [*copy, "--from", f"sqlite:///{walk}", "--to", into])
    add("store copy", "not found", [*copy, "--from", f"sqlite:///{w.tmp / 'no.db'}", "--to", into])
    add("store copy", "configuration", [*copy, "--from", "mysql://db/x", "--to", into])
    # rollouts
    client("rollout status", ["rollout", "status"])
    add("rollout status", "usage", ["rollout", "status", "--timeout", "soon"])
    add("rollout status", "not found", ["rollout", "status", "--env", "nope"])
    client("rollout budget", ["rollout", "budget"])
    add("rollout budget", "usage", ["rollout", "budget", "--max-unavailable", "lots"])
    add("rollout budget", "not found", ["rollout", "budget", "--env", "nope"])
    # the agent and render --once
    agent_out = ["--output", str(shm / "agent.env")]
    add("agent", "usage", ["agent", "--bogus"])
    add("agent", "unreachable", ["agent", *agent_out, "--listen", f"127.0.0.1:{w.busy_port}"])
    add("agent", "configuration", ["agent", *agent_out], "configuration")
    once = ["render", "--once", "--output", str(shm / "once.env"), "--timeout", "0.5"]
    add("render", "usage", ["render", "--output", str(shm / "once.env")])
    add(
        "render",
        "bad input data",
        ["render", "--once", "--format", "docker", "--output", str(shm / "once.docker")],
    )
    add("render", "not found", [*once, "--names", "A,NOPE"])
    add("render", "unreachable", once, "unreachable")
    add("render", "refused", once, "refused")
    add("render", "configuration", once, "configuration")
    # run
    add("run", "usage", ["run", "--bogus", "--", "true"])
    add("run", "bad input data", ["run", "--from-file", str(f["latin1"]), "--", "true"])
    add("run", "not found", ["run", "--from-file", str(f["missing"]), "--", "true"])
    add("run", "not found", ["run", "--only", "NOPE", "--", "true"])
    add("run", "unreachable", ["run", "--timeout", "0.3", "--", "true"], "unreachable")
    add("run", "refused", ["run", "--", "true"], "refused")
    add("run", "configuration", ["run", "--", "true"], "configuration")
    # the webhook, dev and completion
    hook = ["webhook", "--insecure", "--image", "img", "--store-url", "http://store:8700"]
    add("webhook", "usage", ["webhook", "--bogus"])
    add("webhook", "unreachable", [*hook, "--listen", f"127.0.0.1:{w.busy_port}"])
    add(
        "webhook",
        "configuration",
        ["webhook", "--image", "img", "--store-url", "http://store:8700"],
    )
    add("dev", "usage", ["dev", "--port", "eighty"])
    add("completion", "usage", ["completion", "fish"])
    return c


# What cannot happen to a command (so the walk does not expect it): servers and local
# administration make no store requests, dev picks free ports, and so on.
NOT_APPLICABLE = {
    "bad input data": "only commands that read a file, stdin or render values",
    "exists": "only commands that create a named thing",
    "temporary": "only store clients that do not retry (agent, render and run ride it out)",
}


def test_every_command_through_each_class_of_mistake(world: World) -> None:
    table = cases(world)
    leaves = _leaf_commands()
    covered = {command for command, *_ in table}
    assert leaves <= covered, f"commands the walk misses: {sorted(leaves - covered)}"
    for command in covered - {"loader"}:
        classes = {k for cmd, k, *_ in table if cmd == command}
        assert "usage" in classes, command

    def one(case: tuple[str, str, list[str], str, bytes | None]) -> str | None:
        command, klass, argv, kind, stdin = case
        out = run_loader(*argv, env=world.env(kind), stdin=stdin, timeout=60)
        err = out.stderr.decode(errors="replace")
        lines = [line for line in err.splitlines() if not line.startswith("loader: warning:")]
        problems = []
        if out.returncode != CODE[klass]:
            problems.append(f"exit {out.returncode}, expected {CODE[klass]} ({klass})")
        if "Traceback" in err:
            problems.append("a traceback")
        # Long-running commands may log before they fail; the rest say one line only.
        if len(lines) != 1 and command not in ("agent", "render", "store serve", "webhook"):
            problems.append(f"{len(lines)} lines on stderr")
        if not lines or not lines[-1].startswith("loader: "):
            problems.append("no final 'loader: ' line")
        for secret in (CANARY_TOKEN, world.admin, world.weak, world.limited_token):
            if secret in err or secret in out.stdout.decode(errors="replace"):
                problems.append("a token is echoed")
        if problems:
            return f"{command} [{klass}] {argv}: {'; '.join(problems)}: {err.strip()[-300:]!r}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [r for r in pool.map(one, table) if r is not None]
    assert not failures, "\n".join(failures)


def _leaf_commands() -> set[str]:
    """Every runnable command of the full parser, as "secrets set", "store token create"..."""
    import argparse

    found: set[str] = set()

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.add(" ".join(path))
            return
        for name, child in subs[0].choices.items():
            walk(child, [*path, name])

    walk(build_parser("*"), [])
    return found


def test_readme_exit_code_table_is_the_code_table() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- exit-codes -->\n(.*?)<!-- /exit-codes -->", text, re.DOTALL)
    assert block, "README.md has no <!-- exit-codes --> table"
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in block[1].splitlines()
        if line.startswith("|") and not line.startswith("|---") and "code" not in line.lower()[:8]
    ]
    readme = {(int(r[0]), r[1]) for r in rows}
    assert readme == {(code, name) for code, name, _ in EXIT_CODES}


def test_exit_code_table_is_in_every_help_epilog() -> None:
    out = run_loader("--help")
    assert out.returncode == 0
    flat = " ".join(out.stdout.decode().split())
    for code, name, _ in EXIT_CODES:
        if code:
            assert f"{code} {name}" in flat, (code, name)
