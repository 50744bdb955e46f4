"""`loader run` start-up: exec /bin/true with 100 secrets, from a file and from a local agent,
beside the floor (a ten-line script that reads the file and execs), python-dotenv's
`dotenv run` and `direnv exec`, and the frozen standalone `loader-run` (scripts/build-loader-run),
all in one interleaved run."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import OUT, ROOT, Figure, Section, bench_venv, time_commands, wait_for

FLOOR = """import os, sys
env = dict(os.environ)
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip("'\\"")
os.execve(sys.argv[2], sys.argv[2:], env)
"""


def values(n: int = 100) -> dict[str, str]:
    return {f"SECRET_{i:03d}": f"value-{i}-{secrets.token_urlsafe(24)}" for i in range(n)}


def run(quick: bool) -> Section:
    bin_dir = bench_venv(quick)
    py, loader = str(bin_dir / "python"), str(bin_dir / "loader")
    work = Path(tempfile.mkdtemp(prefix="startup-", dir="/dev/shm"))
    data = values()
    env_file = work / "app.env"
    from loader import formats

    env_file.write_text(formats.render("dotenv", data))
    floor = work / "floor.py"
    floor.write_text(FLOOR)
    envrc_dir = work / "direnv"
    envrc_dir.mkdir()
    (envrc_dir / ".envrc").write_text(f"dotenv {env_file}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADER_", "DIRENV"))}
    env["HOME"] = str(work)  # direnv's allow list lives under $HOME
    commands = {
        "floor": [py, str(floor), str(env_file), "/bin/true"],
        "loader run (file)": [loader, "run", "--from-file", str(env_file), "--", "/bin/true"],
        "python -m loader run (file)": [
            py,
            "-m",
            "loader",
            "run",
            "--from-file",
            str(env_file),
            "--",
            "/bin/true",
        ],
    }
    if (bin_dir / "dotenv").exists():
        commands["dotenv run"] = [
            str(bin_dir / "dotenv"),
            "-f",
            str(env_file),
            "run",
            "--",
            "/bin/true",
        ]
    direnv = shutil.which("direnv")
    if direnv:
        subprocess.run([direnv, "allow", str(envrc_dir)], env=env, check=True, capture_output=True)
        commands["direnv exec"] = [direnv, "exec", str(envrc_dir), "/bin/true"]

    frozen = _frozen()
    commands["loader-run (file)"] = [frozen, "--from-file", str(env_file), "--", "/bin/true"]
    agent_procs = _start_agent(bin_dir, work, data, env)
    agent_url = agent_procs[-1]
    agent_env = {**env, "LOADER_AGENT_URL": agent_url}
    commands_agent = {
        "loader run (agent)": [loader, "run", "--", "/bin/true"],
        "loader-run (agent)": [frozen, "--", "/bin/true"],
    }
    try:
        runs, warmup = (3, 1) if quick else (40, 5)
        # Check every command really works (and sees the secrets) before timing it.
        check = subprocess.run(
            [
                loader,
                "run",
                "--from-file",
                str(env_file),
                "--",
                py,
                "-c",
                "import os; print(os.environ['SECRET_042'])",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert check.stdout.strip() == data["SECRET_042"]
        check = subprocess.run(
            [loader, "run", "--", py, "-c", "import os; print(os.environ['SECRET_042'])"],
            env=agent_env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert check.stdout.strip() == data["SECRET_042"]
        check = subprocess.run(
            [frozen, "--", py, "-c", "import os; print(os.environ['SECRET_042'])"],
            env=agent_env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert check.stdout.strip() == data["SECRET_042"]
        times = time_commands({**commands, **commands_agent}, runs, warmup, env={**agent_env})
    finally:
        for proc in agent_procs[:-1]:
            proc.terminate()
            proc.wait()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    section = Section("`loader run` start-up (exec /bin/true with 100 secrets)")
    floor_t = times["floor"]
    section.figures.append(
        Figure(
            "loader run --from-file",
            "ms",
            times["loader run (file)"],
            "floor script",
            floor_t,
            "<= 1.3x",
        )
    )
    if "dotenv run" in times:
        section.figures.append(
            Figure(
                "loader run --from-file",
                "ms",
                times["loader run (file)"],
                "dotenv run",
                times["dotenv run"],
                "<= 0.35x",
            )
        )
    section.figures.append(
        Figure(
            "python -m loader run --from-file",
            "ms",
            times["python -m loader run (file)"],
            "floor script",
            floor_t,
        )
    )
    section.figures.append(
        Figure(
            "loader run (local agent, TCP)",
            "ms",
            times["loader run (agent)"],
            "floor script",
            floor_t,
        )
    )
    for source in ("file", "agent"):
        frozen_t = times[f"loader-run ({source})"]
        section.figures.append(
            Figure(f"loader-run, frozen ({source})", "ms", frozen_t, "floor script", floor_t)
        )
        section.figures.append(
            Figure(
                f"loader-run, frozen ({source})",
                "ms",
                frozen_t,
                f"loader run ({source})",
                times[f"loader run ({source})"],
            )
        )
    if "direnv exec" in times:
        section.figures.append(
            Figure("direnv exec (context)", "ms", times["direnv exec"], "floor script", floor_t)
        )
    section.notes.append(
        f"{runs} interleaved runs after {warmup} warm-up; loader installed from its wheel "
        "(compiled .pyc) in bench/out/venv; the file is the agent's canonical dotenv output."
    )
    section.commands.append("bench/run startup")
    return section


def _frozen() -> str:
    """The standalone loader-run, built (or found in the cache) by scripts/build-loader-run."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-loader-run"), sys.executable],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _start_agent(bin_dir: Path, work: Path, data: dict[str, str], env: dict[str, str]) -> list:  # type: ignore[type-arg]
    loader = str(bin_dir / "loader")
    store_dir = work / "store"
    init = subprocess.run(
        [loader, "store", "init", "--data-dir", str(store_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    admin = json.loads(init.stdout)["admin_token"]
    store = subprocess.Popen(
        [loader, "store", "serve", "--data-dir", str(store_dir), "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert store.stdout is not None
    url = store.stdout.readline().split()[-1]
    from loader.httpclient import HttpClient

    client = HttpClient(url, token=admin)
    app = client.call("POST", "/v1/apps", {"name": "bench"}).json()["id"]
    for name, value in data.items():
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": name, "value": value})
    client.close()
    agent = subprocess.Popen(
        [loader, "agent", "--output", str(work / "agent.env"), "--listen", "127.0.0.1:0"],
        env={**env, "LOADER_STORE_URL": url, "LOADER_TOKEN": admin, "LOADER_APP": str(app)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert agent.stdout is not None
    agent_url = agent.stdout.readline().split()[-1]
    wait_for((work / "agent.env").exists)
    return [agent, store, agent_url]


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    print(run("--quick" in sys.argv))
