"""`loader dev`: the README's first command, end to end as a user runs it."""

from __future__ import annotations

import hashlib
import re
import signal
from pathlib import Path

import yaml

from loader.httpclient import HttpClient
from tests.procs import LOADER, loader_env, run_loader, spawn, wait_for_line, wait_until

STARTED = re.compile(r"\[demo app pid (\d+)\] started")


def test_dev_runs_store_and_agent_with_a_demo_app_and_cleans_up(tmp_path: Path) -> None:
    """1. start `loader dev`; 2. the banner gives URLs and token; 3. the agent has rendered the
    demo app into tmpfs; 4. a change through the API is re-rendered and announced by name only;
    5. five successive `loader secrets set GREETING`, as the banner suggests: five restarts of
    the demo app, each with the value just set; 6. Ctrl-C stops it and removes the store and
    the rendered files."""
    proc = spawn([*LOADER, "dev", "--port", "0", "--agent-port", "0"], tmp_path / "dev.log")
    try:
        url = wait_for_line(proc, r"Store API:\s+(http://\S+)")
        token = wait_for_line(proc, r"Admin token:\s+(lt_\S+)")
        data_dir = Path(wait_for_line(proc, r"embedded SQLite store in (\S+?);"))
        out_dir = Path(wait_for_line(proc, r"Agent:\s+renders into (\S+) \(tmpfs\)"))
        agent_url = wait_for_line(proc, r"Agent API:\s+(http://\S+)/v1/secrets")
        app = int(wait_for_line(proc, r"Demo app:\s+demo \(id (\d+)\)"))
        assert str(out_dir).startswith(("/dev/shm", "/run"))
        env_file, pod = out_dir / ".env", out_dir / "spicepod.yaml"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert "GREETING='hello from loader'" in env_file.read_text()

        wait_until(lambda: "[demo app pid" in proc.output(), what="the demo process")
        client = HttpClient(url, token=token)
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "GREETING", "value": "hola: zx81"})
        wait_until(lambda: "hola: zx81" in pod.read_text())
        params = yaml.safe_load(pod.read_text())["models"][0]["params"]
        assert params["system_prompt"] == 'Greet every user with "hola: zx81" first.'
        wait_until(
            lambda: (
                re.search(
                    r"\[agent\] revision \d+: rendered API_KEY, DATABASE_URL, "
                    r"GREETING",
                    proc.output(),
                )
                is not None
            )
        )
        wait_until(
            lambda: len(re.findall(r"\[demo app pid (\d+)\] started", proc.output())) >= 2,
            what="the demo process restarted by the runner",
        )
        pids = re.findall(r"\[demo app pid (\d+)\] started", proc.output())
        assert pids[0] != pids[-1]
        assert "printing GREETING outright: ******" in proc.output()
        agent = HttpClient(agent_url, headers={"X-Loader-Request": "true"})
        assert agent.call("GET", "/v1/secrets").json()["GREETING"] == "hola: zx81"

        cli_env = loader_env(LOADER_STORE_URL=url, LOADER_TOKEN=token, LOADER_APP=str(app))
        for i in range(1, 6):
            value = f"bonjour {i}"
            started = len(STARTED.findall(proc.output()))
            out = run_loader("secrets", "set", "GREETING", env=cli_env, stdin=value.encode())
            assert out.returncode == 0, out.stderr
            fingerprint = hashlib.sha256(value.encode()).hexdigest()[:8]
            report = f"GREETING({len(value)} chars, sha256 {fingerprint})"
            wait_until(
                lambda s=started, r=report: (
                    len(STARTED.findall(proc.output())) == s + 1 and r in proc.output()
                ),
                what=f"demo app restarted for set {i}",
            )
        values = client.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        for secret in values.json()["secrets"].values():
            assert secret not in proc.output() + proc.logs()
        client.close()
        agent.close()
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.logs()
    assert not data_dir.exists() and not out_dir.exists()
    assert "Traceback" not in proc.logs()
