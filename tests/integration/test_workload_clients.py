"""Workload identity end to end, with real processes: the trust CLI, a store process, the
agent, ``render --once`` and ``loader run`` with ``LOADER_AUTH=jwt`` on a projected-style token
file (the kubelet's layout: a timestamped directory behind a ``..data`` symlink, swapped on
rotation). The issuer's keys are a JWKS file here (the store's other source of keys)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from tests.issuer import AUDIENCE, ISSUER, Issuer, pod_claims
from tests.procs import (
    Proc,
    free_port,
    init_store,
    loader_env,
    run_loader,
    start_agent,
    start_runner,
    start_store,
    wait_until,
)


def project(folder: Path, token: str) -> Path:
    """Write ``token`` as the kubelet writes a projected volume: a new timestamped directory,
    then ``..data`` swapped to it in one rename; ``loader`` -> ``..data/loader``."""
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = folder / f"..{time.time_ns()}"
    stamp.mkdir(mode=0o700)
    (stamp / "loader").write_text(token)
    (stamp / "loader").chmod(0o600)
    link = folder / "..data_tmp"
    link.symlink_to(stamp.name)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    link.replace(folder / "..data")
    if not (folder / "loader").is_symlink():
        (folder / "loader").symlink_to("..data/loader")
    if old is not None:
        for f in (folder / old).iterdir():
            f.unlink()
        (folder / old).rmdir()
    return folder / "loader"


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "store"
        self.admin = init_store(self.data)
        self.issuer = Issuer()
        self.jwks = tmp_path / "jwks.json"
        self.issuer.write_jwks(self.jwks)
        self.port = free_port()
        self.store: Proc = start_store(
            self.data, "--jwks-refetch-interval", "0s", listen=f"127.0.0.1:{self.port}"
        )
        self.url = self.store.url
        self.app = int(self.client().call("POST", "/v1/apps", {"name": "shop"}).json()["id"])

    def client(self) -> HttpClient:
        return HttpClient(self.url, token=self.admin)

    def put(self, name: str, value: str) -> None:
        path = f"/v1/apps/{self.app}/environments/default/secrets"
        self.client().call("POST", path, {"name": name, "value": value})

    def trust(self, *extra: str) -> str:
        out = run_loader(
            "store", "trust", "create", "--data-dir", str(self.data), "--issuer", ISSUER,
            "--jwks-file", str(self.jwks), "--audience", AUDIENCE, "--k8s-namespace", "shop",
            "--k8s-service-account", "api", "--scopes", "secrets:reveal", "--app", "shop",
            "--json", *extra,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["id"])

    def env(self, jwt_file: Path, **extra: str) -> dict[str, str]:
        return loader_env(
            LOADER_STORE_URL=self.url,
            LOADER_APP=str(self.app),
            LOADER_AUTH="jwt",
            LOADER_JWT_FILE=str(jwt_file),
            **extra,
        )

    def exchanges(self) -> list[dict[str, object]]:
        events = self.client().call("GET", f"/v1/apps/{self.app}/audit?action=issue_access_token")
        return list(events.json()["events"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.store.stop()


def test_trust_cli_create_list_delete_and_refusals(world: World) -> None:
    policy = world.trust("--ttl", "5m", "--description", "shop api pods")
    listed = run_loader("store", "trust", "list", "--data-dir", str(world.data), "--json")
    (row,) = json.loads(listed.stdout)["policies"]
    assert row["id"] == policy and row["app"] == world.app and row["ttl"] == 300
    assert row["conditions"] == {
        "kubernetes.io.namespace": "shop",
        "kubernetes.io.serviceaccount.name": "api",
    }
    table = run_loader("store", "trust", "list", "--data-dir", str(world.data))
    assert policy in table.stdout.decode()
    base = ["store", "trust", "create", "--data-dir", str(world.data), "--issuer", ISSUER]
    base += ["--audience", AUDIENCE, "--scopes", "secrets:read"]
    for args, code in (
        (["--jwks-file", str(world.jwks)], 64),  # no condition
        (["--jwks-file", str(world.jwks), "--claim", "sub=*"], 64),  # one that matches anything
        (["--jwks-url", "http://issuer.example/jwks", "--claim", "repository=o/r"], 64),
        (["--claim", "repository=o/r"], 64),  # no keys
        (["--jwks-file", str(world.jwks), "--k8s-namespace", "x", "--ttl", "1s"], 64),
        (["--jwks-file", str(world.jwks), "--k8s-namespace", "x", "--app", "nope"], 66),
    ):
        out = run_loader(*base, *args)
        assert out.returncode == code, (args, out.stderr)
        assert len(out.stderr.decode().strip().splitlines()) == 1 and b"Traceback" not in out.stderr
    gone = run_loader("store", "trust", "delete", "--data-dir", str(world.data), policy)
    assert gone.returncode == 0
    again = run_loader("store", "trust", "delete", "--data-dir", str(world.data), policy)
    assert again.returncode == 66
    empty = run_loader("store", "trust", "list", "--data-dir", str(world.data), "--json")
    assert json.loads(empty.stdout)["policies"] == []


def test_agent_follows_through_a_token_rotation(world: World, shm: Path) -> None:
    """1. a policy for shop/api; the pod's token (valid 8 s) in a projected-style file; 2. the
    agent trades it and renders; 3. the issuer rotates its key and the kubelet swaps in a new
    token signed by it; 4. changes keep arriving past the first token's end (the agent traded
    the new file's token before its access ran out); 5. the exchanges are audited with the
    subject, and no token is in the agent's log."""
    world.trust("--ttl", "1m")
    world.put("A", "v1")
    first = world.issuer.sign(pod_claims(exp=int(time.time()) + 8))
    jwt_file = project(world.tmp / "tokens", first)
    out = shm / "app.env"
    agent = start_agent(
        world.tmp / "agent.log",
        "--output",
        str(out),
        "--listen",
        "off",
        env=world.env(jwt_file),
        wait_listening=False,
    )
    try:
        wait_until(lambda: out.exists() and "v1" in out.read_text(), 20, "first render")
        world.issuer.rotate()
        world.issuer.write_jwks(world.jwks)  # the old key is gone from the JWKS
        second = world.issuer.sign(pod_claims(exp=int(time.time()) + 600))
        project(world.tmp / "tokens", second)
        world.put("A", "v2")
        wait_until(lambda: "v2" in out.read_text(), 20, "a change after the rotation")
        time.sleep(max(0.0, 9 - (time.time() - (json.loads(_claims(first))["iat"]))))
        world.put("A", "v3")
        wait_until(lambda: "v3" in out.read_text(), 20, "a change past the first token's end")
        exchanges = [e for e in world.exchanges() if e["outcome"] == "ok"]
        assert len(exchanges) >= 2
        assert {e["subject"] for e in exchanges} == {"system:serviceaccount:shop:api"}
        assert agent.proc.poll() is None
    finally:
        agent.stop()
    logs = agent.logs()
    assert "traded the workload token" in logs
    assert first not in logs and second not in logs and "eyJ" not in logs


def _claims(token: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(token.split(".")[1] + "==")


def test_render_once_and_loader_run_trade_the_jwt(world: World, shm: Path) -> None:
    """``render --once`` and ``loader run`` (exec and --watch) with LOADER_AUTH=jwt; a token
    the policy does not match is refused with exit 77 and one line."""
    world.trust()
    world.put("A", "from-the-store")
    jwt_file = project(world.tmp / "tokens", world.issuer.sign())
    out = shm / "once.env"
    once = run_loader("render", "--once", "--output", str(out), env=world.env(jwt_file))
    assert once.returncode == 0, once.stderr
    assert "from-the-store" in out.read_text()
    run = run_loader("run", "--", "sh", "-c", 'printf %s "$A"', env=world.env(jwt_file))
    assert (run.returncode, run.stdout) == (0, b"from-the-store"), run.stderr
    watch_log = world.tmp / "watch.log"
    script = 'while :; do printf "%s\\n" "$A" >> "$OUT"; sleep 0.2; done'
    watcher = start_runner(
        watch_log,
        ["--watch"],
        ["sh", "-c", script],
        env={**world.env(jwt_file), "OUT": str(world.tmp / "seen")},
    )
    try:
        seen = world.tmp / "seen"
        wait_until(lambda: seen.exists() and "from-the-store" in seen.read_text(), 20, "start")
        world.put("A", "changed")
        wait_until(lambda: "changed" in seen.read_text(), 20, "restart on change")
    finally:
        watcher.stop()
    intruder = project(world.tmp / "other", world.issuer.sign(pod_claims(namespace="intruder")))
    for args in (["render", "--once", "--output", str(out)], ["run", "--", "true"]):
        refused = run_loader(*args, env=world.env(intruder))
        assert refused.returncode == 77, refused.stderr
        err = refused.stderr.decode()
        assert "no_matching_policy" in err and len(err.strip().splitlines()) == 1
        assert "eyJ" not in err
