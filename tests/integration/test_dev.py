"""`loader dev`: the README's first command, end to end as a user runs it."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from loader.httpclient import HttpClient
from tests.procs import LOADER, spawn, wait_for_line


def test_dev_runs_a_store_with_a_demo_app_and_cleans_up(tmp_path: Path) -> None:
    """1. start `loader dev`; 2. the banner gives URL and token; 3. the demo app has its
    secrets; 4. a change through the API is served; 5. Ctrl-C stops it and removes its files."""
    proc = spawn([*LOADER, "dev", "--port", "0"], tmp_path / "dev.log")
    try:
        url = wait_for_line(proc, r"Store API:\s+(http://\S+)")
        token = wait_for_line(proc, r"Admin token:\s+(lt_\S+)")
        data_dir = Path(wait_for_line(proc, r"embedded SQLite store in (\S+?);"))
        app = int(wait_for_line(proc, r"Demo app:\s+demo \(id (\d+)\)"))
        client = HttpClient(url, token=token)
        names = [s["name"] for s in client.call("GET", f"/v1/apps/{app}/secrets").json()["secrets"]]
        assert names == ["API_KEY", "DATABASE_URL", "GREETING"]
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": "GREETING", "value": "hola-zx81"})
        values = client.call("GET", f"/v1/apps/{app}/environments/default/rendered?mode=full")
        assert values.json()["secrets"]["GREETING"] == "hola-zx81"
        client.close()
        assert data_dir.is_dir()
        for secret in values.json()["secrets"].values():
            assert secret not in proc.output().replace(token, "")
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.logs()
    assert not data_dir.exists()
    assert re.search(r"Traceback", proc.logs()) is None
