"""Leak hunt: canary values stored through every path; afterwards they are found only where
they belong (the tmpfs files the agent renders, the app's environment) and nowhere else the
system left anything: database files, WAL, DEBUG logs, audit table and file, error bodies,
process command lines and environments, files outside tmpfs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from loader.httpclient import HttpClient
from tests.procs import (
    LOADER,
    init_store,
    loader_env,
    run_loader,
    spawn,
    start_agent,
    start_store,
    wait_until,
)

CANARIES = {
    "API_CANARY": "leak-canary-api-7f1e2d",
    "CLI_CANARY": "leak-canary-cli-a9b8c7",
    "IMPORT_CANARY": "leak-canary-import-55aa",
    "TEMPLATE_CANARY": "leak-canary-template-0f0f",
}


def hits(data: bytes) -> set[str]:
    return {name for name, value in CANARIES.items() if value.encode() in data}


def test_canaries_are_only_where_they_belong(tmp_path: Path, shm: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    data = work / "store"
    admin = init_store(data)
    store = start_store(data, "--log-level", "debug", "--audit-file", str(work / "audit.jsonl"))
    client = HttpClient(store.url, token=admin)
    app = client.call("POST", "/v1/apps", {"name": "leaky"}).json()["id"]
    errors: list[bytes] = []
    try:
        # 1. every way in: API, CLI (stdin), import (.env file), template reference
        client.call(
            "POST",
            f"/v1/apps/{app}/secrets",
            {"name": "API_CANARY", "value": CANARIES["API_CANARY"]},
        )
        cli_env = loader_env(
            LOADER_STORE_URL=store.url,
            LOADER_TOKEN=admin,
            LOADER_APP=str(app),
            LOADER_LOG_LEVEL="debug",
        )
        out = run_loader(
            "secrets", "set", "CLI_CANARY", stdin=CANARIES["CLI_CANARY"].encode(), env=cli_env
        )
        assert out.returncode == 0
        errors += [out.stdout, out.stderr]
        user_file = tmp_path / "user-input.env"  # the user's own file: not ours to police
        user_file.write_text(
            f"IMPORT_CANARY={CANARIES['IMPORT_CANARY']}\n"
            f"TEMPLATE_CANARY={CANARIES['TEMPLATE_CANARY']}\n"
        )
        out = run_loader("secrets", "import", str(user_file), env=cli_env)
        assert out.returncode == 0
        errors += [out.stdout, out.stderr]
        # 2. refused requests that carry a canary
        for body in (
            {"name": "bad-name", "value": CANARIES["API_CANARY"]},
            {"name": "API_CANARY", "value": CANARIES["API_CANARY"], "extra": 1},
            {"name": CANARIES["API_CANARY"], "value": "x"},
        ):
            errors.append(client.request("POST", f"/v1/apps/{app}/secrets", body).body)
        errors.append(
            client.request("GET", f"/v1/apps/{app}/secrets/{CANARIES['API_CANARY']}").body
        )
        out = run_loader("secrets", "set", CANARIES["CLI_CANARY"], stdin=b"x", env=cli_env)
        errors += [out.stdout, out.stderr]
        assert out.returncode == 64
        # 3. the agent renders to tmpfs, a runner child reads it, masked
        template = work / "spicepod.yaml"
        template.write_text("kind: Spicepod\nname: x\nparams:\n  k: ${secrets:TEMPLATE_CANARY}\n")
        agent = start_agent(
            work / "agent.log",
            "--output",
            str(shm / "app.env"),
            "--template",
            str(template),
            "--template-output",
            str(shm / "spicepod.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            env=loader_env(LOADER_STORE_URL=store.url, LOADER_TOKEN=admin, LOADER_APP=str(app)),
        )
        wait_until((shm / "spicepod.yaml").exists)
        child = spawn(
            [
                *LOADER,
                "run",
                "--watch",
                "--mask",
                "--",
                sys.executable,
                "-c",
                "import os, time; print(os.environ['API_CANARY'], flush=True); time.sleep(60)",
            ],
            work / "runner.log",
            env=loader_env(LOADER_AGENT_URL=agent.url, LOADER_LOG_LEVEL="debug"),
        )
        wait_until(lambda: "******" in child.output())
        client.call(
            "POST",
            f"/v1/apps/{app}/secrets",
            {"name": "API_CANARY", "value": CANARIES["API_CANARY"] + "-2"},
        )
        wait_until(lambda: CANARIES["API_CANARY"] + "-2" in (shm / "app.env").read_text())
        # 4. look everywhere while they run
        procs = {"store": store.pid, "agent": agent.pid, "runner": child.pid}
        for name, pid in procs.items():
            for what in ("cmdline", "environ"):
                found = hits(Path(f"/proc/{pid}/{what}").read_bytes())
                assert found == set(), f"{name} /proc {what}: {found}"
        child_pids = [
            int(p) for p in Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
        ]
        assert child_pids and "API_CANARY" in hits(
            Path(f"/proc/{child_pids[0]}/environ").read_bytes()
        )  # where it belongs
        child.stop()
        agent.stop()
    finally:
        client.close()
        store.stop()
    # positive control: the search works, and the canaries are where they belong
    assert hits((shm / "app.env").read_bytes()) == set(CANARIES)
    assert hits((shm / "spicepod.yaml").read_bytes()) == {"TEMPLATE_CANARY"}
    # 5. everything left behind, outside tmpfs
    leaks = {}
    for path in sorted(work.rglob("*")):
        if path.is_file():
            found = hits(path.read_bytes())
            if found:
                leaks[str(path.relative_to(work))] = found
    for i, body in enumerate(errors):
        if hits(body):
            leaks[f"error/output #{i}"] = hits(body)
    assert leaks == {}
    db_files = [p.name for p in data.iterdir() if p.name.startswith("loader.db")]
    assert {"loader.db", "loader.db-wal"} <= set(db_files) or "loader.db" in db_files
    audit_lines = (work / "audit.jsonl").read_text().splitlines()
    assert audit_lines and all("names" in json.loads(line) for line in audit_lines)
    logs = store.logs() + agent.logs() + child.logs()
    assert "loader.access" in logs  # the access log only shows at DEBUG: the level was DEBUG
    print(
        f"leak hunt: {len(CANARIES)} canaries, {sum(1 for _ in work.rglob('*'))} files, "
        f"{len(errors)} outputs, 3 processes searched; canaries found outside: 0"
    )
    assert os.environ.get("LOADER_TOKEN") is None
