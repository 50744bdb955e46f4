"""schemathesis against a live store's own /v1/openapi.json: no 5xx, no response that breaks
the document (all checks: status codes, content types, schemas, headers, auth enforcement,
unsupported methods, negative data rejected, positive data accepted).

A bounded run for the default suite; ``tests/adversarial`` runs a larger one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from loader.httpclient import HttpClient
from tests.procs import init_store, loader_env, start_store

ROOT = Path(__file__).resolve().parents[2]
ST = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"


def run_schemathesis(
    url: str, token: str | None, report: Path, *extra: str, schema: str | None = None
) -> tuple[int, str]:
    args = [
        ST,
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "--no-color",
        "run",
        schema or f"{url}/v1/openapi.json",
        "--checks",
        "all",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        *extra,
    ]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    return out.returncode, out.stdout[-6000:] + out.stderr[-2000:]


def seed_store(url: str, token: str) -> None:
    client = HttpClient(url, token=token)
    app = client.call("POST", "/v1/apps", {"name": "fuzzed"}).json()["id"]
    client.call("POST", f"/v1/apps/{app}/environments", {"name": "prod"})
    for name in ("A", "DATABASE_URL", "API_KEY"):
        client.call("POST", f"/v1/apps/{app}/secrets", {"name": name, "value": "v-" + name})
    client.close()


def count_requests(report: Path) -> int:
    total = 0
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" in event:
            total += len(event["ScenarioFinished"].get("recorder", {}).get("interactions", {}))
    return total


# A conformance run sends thousands of requests without a good token from one address: lift the
# refusal budget meant for floods (tests/adversarial/test_unauthenticated_load.py tests it).
UNLIMITED_REFUSALS = loader_env(LOADER_REFUSAL_BURST="1000000")


def test_store_openapi_conformance(tmp_path: Path) -> None:
    data = tmp_path / "store"
    token = init_store(data)
    proc = start_store(data, env=UNLIMITED_REFUSALS)
    try:
        seed_store(proc.url, token)
        report = tmp_path / "st.ndjson"
        code, output = run_schemathesis(
            proc.url, token, report, "--max-examples", "25", "--seed", "20261123"
        )
        assert code == 0, output
        assert count_requests(report) > 500, output
        assert "Traceback" not in proc.logs()
    finally:
        proc.stop()
