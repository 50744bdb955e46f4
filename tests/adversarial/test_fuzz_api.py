"""schemathesis against a live store: its own document (with and without a token, positive and
negative data, stateful sequences), and the vendor's Spice Cloud document on the
Spice-compatible routes. Zero 5xx, zero responses that break the document."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loader.httpclient import HttpClient
from tests.data import SEED
from tests.integration.test_store_schemathesis import (
    UNLIMITED_REFUSALS,
    count_requests,
    run_schemathesis,
)
from tests.procs import init_store, start_store

# A fixed seed by default, so CI is repeatable (an unseeded run once found a replayed
# Idempotency-Key for an app deleted since, a 404 its stateful check counts as a failure, and
# failed one CI run in several). FUZZ_SEED=random explores new sequences; FUZZ_SEED=N replays one.
_SEED = os.environ.get("FUZZ_SEED", "20261130")
SEED_ARGS = [] if _SEED == "random" else ["--seed", _SEED]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("fuzz") / "store"
    token = init_store(data)
    proc = start_store(data, env=UNLIMITED_REFUSALS)
    client = HttpClient(proc.url, token=token)
    for name in ("fuzzed", "second"):
        app = client.call("POST", "/v1/apps", {"name": name}).json()["id"]
        client.call("POST", f"/v1/apps/{app}/environments", {"name": "prod"})
        for secret in ("A", "DATABASE_URL", "_internal"):
            client.call("POST", f"/v1/apps/{app}/secrets", {"name": secret, "value": "v"})
    client.close()
    yield proc, token
    proc.stop()  # first: a failed check below must not leave the store running
    assert "Traceback" not in proc.logs()


def test_fuzz_own_document_with_a_token(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, token = live
    report = tmp_path / "st.ndjson"
    code, output = run_schemathesis(proc.url, token, report, "--max-examples", "80", *SEED_ARGS)
    requests = count_requests(report)
    print(f"schemathesis, own document, with a token: {requests} requests, exit {code}")
    assert code == 0, output
    assert requests > 2000


def test_fuzz_own_document_without_a_token(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, _ = live
    report = tmp_path / "st.ndjson"
    code, output = run_schemathesis(proc.url, None, report, "--max-examples", "20", *SEED_ARGS)
    requests = count_requests(report)
    print(f"schemathesis, own document, no token: {requests} requests, exit {code}")
    assert code == 0, output
    assert requests > 300


def test_fuzz_the_vendor_document_on_the_spice_routes(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The vendor's schema does not say app ids are positive or what a name may hold; the
    contract does, and the vendor lists 400 for both: so generated ids like 0 are answered 400,
    which schemathesis' "positive data accepted" check would count against us. Every other
    check runs."""
    proc, token = live
    report = tmp_path / "st.ndjson"
    code, output = run_schemathesis(
        proc.url,
        token,
        report,
        "--max-examples",
        "80",
        "--url",
        proc.url,
        "--exclude-checks",
        "positive_data_acceptance",
        *SEED_ARGS,
        schema=str(SEED),
    )
    requests = count_requests(report)
    print(f"schemathesis, vendor document: {requests} requests, exit {code}")
    assert code == 0, output
    assert requests > 300
    doc = json.loads(SEED.read_text())
    assert set(doc["paths"]) == {
        "/v1/apps/{appId}/secrets",
        "/v1/apps/{appId}/secrets/{secretName}",
    }
