"""The chart against real validators, every rendered variant: ``kubernetes-validate`` (the
Kubernetes OpenAPI schemas, strict) for each minor version from 1.27 to 1.37, the chart
rendered for that version (so 1.29+ get the native sidecar), and checkov's Kubernetes policies
on the renderings for a classic and a native cluster. The checks declined (docs/kubernetes.md
says why) are the only failures allowed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import tools
from tests.integration.test_helm import CASES, CHART, HELM, MASTER, NAMESPACE, RELEASE

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = [f"1.{minor}.0" for minor in range(27, 38)]
DIGEST = "sha256:" + "5e" * 32
VARIANTS: dict[str, list[str]] = {
    **CASES,
    # image.digest preferred: every image pinned, so CKV_K8S_43 holds here.
    "digests": [
        *MASTER,
        "--set", f"image.digest={DIGEST}",
        "--set", "exampleApp.enabled=true",
        "--set", "exampleApp.app=3",
        "--set", f"exampleApp.image=spiceai/spiceai@{DIGEST}",
        "--set", "webhook.enabled=true",
        "--set", "webhook.certManager.enabled=true",
        "--set", "agent.nativeSidecar=false",
    ],
}  # fmt: skip
# Declined checkov checks (docs/kubernetes.md, "Policy checks"), and where.
DECLINED_EVERYWHERE = {"CKV_K8S_15"}  # imagePullPolicy Always: a pinned digest makes it moot
DECLINED_WITHOUT_DIGEST = {"CKV_K8S_43"}  # image by digest: needs image.digest, a user's value
CHECKOV = shutil.which("checkov") or (
    str(ROOT / ".tools" / "checkov" / "bin" / "checkov")
    if (ROOT / ".tools" / "checkov" / "bin" / "checkov").exists()
    else None
)

pytestmark = pytest.mark.helm


def template(version: str, values: list[str]) -> str:
    tools.require(HELM, "helm (on PATH or in .tools/bin)")
    assert HELM is not None
    out = subprocess.run(
        [HELM, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--kube-version", version, *values],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") == "Deployment":
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendering_is_valid_for_its_kubernetes_version(variant: str) -> None:
    """Rendered for each version from 1.27 to 1.37 and validated, strictly, against that
    version's schema; only cert-manager's kinds (not in Kubernetes' schema) are not checked.
    From 1.29 on, with agent.nativeSidecar auto, the agent is a native sidecar."""
    natives = set()
    for version in VERSIONS:
        docs = [d for d in yaml.safe_load_all(template(version, VARIANTS[variant])) if d]
        for doc in docs:
            if doc["apiVersion"].startswith("cert-manager.io/"):
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{variant} on {version}: {doc['kind']} {doc['metadata']['name']}: "
                    f"{str(exc)[:1500]}"
                ) from None
            spec = pod_spec(doc)
            for init in (spec or {}).get("initContainers", []):
                if init.get("restartPolicy") == "Always":
                    natives.add(version)
    if "exampleApp.enabled=true" in VARIANTS[variant] and variant != "digests":
        assert sorted(natives) == [v for v in VERSIONS if int(v.split(".")[1]) >= 29], variant


def test_native_sidecar_rendering() -> None:
    """On 1.29+: the example app's agent is its only init container, restartPolicy Always, a
    startup probe on /readyz lasting the render timeout, no `render --once`, and Spice alone in
    containers; the webhook is told to inject the same way. nativeSidecar=false keeps the
    classic layout on a new cluster; =true forces the native one on an old one."""
    values = VARIANTS["everything"]
    docs = [d for d in yaml.safe_load_all(template("1.29.0", values)) if d]
    app = next(
        d for d in docs if d["kind"] == "Deployment" and "spice-demo" in d["metadata"]["name"]
    )
    spec = app["spec"]["template"]["spec"]
    (agent,) = spec["initContainers"]
    assert agent["name"] == "loader-agent"
    assert agent["restartPolicy"] == "Always"
    assert agent["args"] == ["agent"]
    startup = agent["startupProbe"]
    assert "/readyz" in startup["exec"]["command"][-1]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 60
    assert [c["name"] for c in spec["containers"]] == ["spice"]
    webhook = next(
        d for d in docs if d["kind"] == "Deployment" and "webhook" in d["metadata"]["name"]
    )
    env = {
        e["name"]: e["value"] for e in webhook["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LOADER_WEBHOOK_NATIVE_SIDECAR"] == "true"

    for version, mode, native in (("1.35.0", "false", False), ("1.27.0", "true", True)):
        text = template(version, [*values, "--set", f"agent.nativeSidecar={mode}"])
        docs = [d for d in yaml.safe_load_all(text) if d]
        app = next(
            d for d in docs if d["kind"] == "Deployment" and "spice" in d["metadata"]["name"]
        )
        names = [c["name"] for c in app["spec"]["template"]["spec"]["initContainers"]]
        assert names == (["loader-agent"] if native else ["loader-render"]), (version, mode)
        assert f'value: "{str(native).lower()}"' in text.split("LOADER_WEBHOOK_NATIVE_SIDECAR")[1]


def test_network_policies_select_every_pod() -> None:
    """Each pod the chart renders is selected by a NetworkPolicy of its own component."""
    docs = [d for d in yaml.safe_load_all(template("1.35.0", VARIANTS["everything"])) if d]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for doc in docs:
        if pod_spec(doc) is None:
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        selecting = [
            p["metadata"]["name"]
            for p in policies
            if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(selecting) == 1, (doc["metadata"]["name"], selecting)
    webhook = next(p for p in policies if "webhook" in p["metadata"]["name"])
    assert webhook["spec"]["egress"] == []
    assert webhook["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_checkov_passes_every_rendering_but_the_declined_checks(tmp_path: Path) -> None:
    """checkov (its Kubernetes framework) on each variant rendered for a classic (1.28) and a
    native (1.35) cluster: nothing fails but the declined checks, and those only where declined
    (the digests variant pins every image, so there CKV_K8S_43 must pass too)."""
    tools.require(CHECKOV, "checkov (in .tools/checkov)")
    assert CHECKOV is not None
    for variant, values in VARIANTS.items():
        for version in ("1.28.0", "1.35.0"):
            name = f"{variant.replace('/', '-')}-{version}.yaml"
            (tmp_path / name).write_text(template(version, values))
    out = subprocess.run(
        [CHECKOV, "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--quiet",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-3000:]
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 100 * len(VARIANTS), passed  # it did look at every file
    unexpected = [
        f"{c['check_id']} {c['file_path']} {c['resource']}"
        for c in failed
        if c["check_id"] not in DECLINED_EVERYWHERE
        and not (c["check_id"] in DECLINED_WITHOUT_DIGEST and "digests-" not in c["file_path"])
    ]
    assert not unexpected, "\n".join(unexpected)
