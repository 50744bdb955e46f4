"""The Helm chart, rendered by the real ``helm`` (lint and template) for the default values,
each example values file and the optional parts; the manifests are parsed and held to the
hardening rules. Then the rendered store, init container and agent are run for real (their
exact commands and environments, mount paths mapped to local directories) against each other,
following docs/kubernetes.md: the chart's wiring works, not just its YAML."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from dotenv import dotenv_values

from loader.httpclient import HttpClient
from loader.server.settings import StoreSettings
from loader.webhook.settings import WebhookSettings
from loader.workload import DEFAULT_JWT_FILE
from tests import tools
from tests.procs import Proc, free_port, loader_env, spawn, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "loader"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
HELM = shutil.which("helm") or (
    str(ROOT / ".tools" / "bin" / "helm") if (ROOT / ".tools" / "bin" / "helm").exists() else None
)
RELEASE, NAMESPACE = "loader", "loader"
MASTER = ["--set", "masterKey.existingSecret=loader-master-key"]

pytestmark = pytest.mark.helm


@pytest.fixture(autouse=True, scope="module")
def _helm() -> None:
    tools.require(HELM, "helm (on PATH or in .tools/bin)")


# A 32-byte key in base64 (what `openssl rand -base64 32` prints), standing alone.
KEY_LIKE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])")
TOKEN_LIKE = re.compile(r"\b(lt|lc)_[0-9a-f]{12}_")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


# The classic sidecar's cluster (agent.nativeSidecar: auto); test_chart_validators.py renders
# the native sidecar of 1.29+.
CLASSIC = ("--kube-version", "1.28.0")


def render(*values: str) -> tuple[str, list[dict[str, Any]]]:
    lint = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *CLASSIC, *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *CLASSIC, *values)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return out.stdout, docs


# Each rendering: the values, and what it must contain.
CASES: dict[str, list[str]] = {
    "default": MASTER,
    **{f"examples/{p.name}": ["-f", str(p)] for p in EXAMPLES},
    "everything": [
        *MASTER,
        "--set", "exampleApp.enabled=true",
        "--set", "exampleApp.app=3",
        "--set", "webhook.enabled=true",
        "--set", "webhook.certManager.enabled=true",
        "--set", "store.tls.existingSecret=loader-store-tls",
        "--set", "store.rateLimit=20/s",
        "--set", "persistence.storageClass=fast",
    ],
    "webhook-own-tls": [
        *MASTER,
        "--set", "webhook.enabled=true",
        "--set", "webhook.tls.existingSecret=loader-webhook-tls",
        "--set", "webhook.caBundle=" + base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
        "--set", "persistence.enabled=false",
        "--set", "networkPolicy.clientNamespaceSelector=null",
    ],
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, str, list[dict[str, Any]]]:
    text, docs = render(*CASES[request.param])
    return request.param, text, docs


# -- reading manifests --------------------------------------------------------------------------


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def component(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind(docs, kind)
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d.get("kind") == "Pod":
            specs.append((d["metadata"]["name"], d["spec"]))
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [i for i in items if i["name"] == name]
    assert len(found) == 1, f"{name}: {[i['name'] for i in items]}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- every rendering ----------------------------------------------------------------------------


def test_every_pod_and_container_is_hardened(rendered: tuple[str, str, list[Any]]) -> None:
    case, _, docs = rendered
    specs = pod_specs(docs)
    assert specs, case
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["runAsUser"] == 65532, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        for c in containers(spec):
            where = f"{case}: {name}/{c['name']}"
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx.get("privileged", False) is False, where
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) >= {"cpu", "memory"}, where


def test_no_secret_material_in_any_manifest(rendered: tuple[str, str, list[Any]]) -> None:
    case, text, docs = rendered
    assert "PRIVATE KEY" not in text, case
    assert not KEY_LIKE.findall(text), case
    assert not TOKEN_LIKE.findall(text), case
    assert not of_kind(docs, "Secret"), case
    for name, spec in pod_specs(docs):
        for c in containers(spec):
            env = env_of(c)
            assert "LOADER_TOKEN" not in env, name
            assert "LOADER_MASTER_KEY" not in env, name
            assert "LOADER_DATABASE_URL" not in env, name  # a mounted file, if any


def test_store_deployment_service_and_network_policy(rendered: tuple[str, str, list[Any]]) -> None:
    case, _, docs = rendered
    (deployment,) = component(docs, "Deployment", "store")
    spec = deployment["spec"]["template"]["spec"]
    store = named(spec["containers"], "store")
    assert store["command"] == ["python", "-m", "loader"]
    assert store["args"][:4] == ["store", "serve", "--listen", "0.0.0.0:8700"]
    migrate = named(spec["initContainers"], "migrate")
    assert migrate["args"] == ["store", "migrate"]
    for probe, path in (("livenessProbe", "/v1/health"), ("readinessProbe", "/v1/ready")):
        assert store[probe]["httpGet"]["path"] == path, case
        assert store[probe]["httpGet"]["port"] == "http"
    assert named(store["ports"], "http")["containerPort"] == 8700

    key = named(spec["volumes"], "master-key")["secret"]
    assert key["secretName"] == "loader-master-key"
    assert key["defaultMode"] == 0o400
    assert key["items"] == [{"key": "master.key", "path": "master.key"}]
    for c in (store, migrate):
        assert env_of(c)["LOADER_MASTER_KEY_FILE"] == "/etc/loader/master-key/master.key"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/etc/loader/master-key"] == {
            "name": "master-key",
            "mountPath": "/etc/loader/master-key",
            "readOnly": True,
        }
        assert mounts["/tmp"]["name"] == "tmp"
    assert named(spec["volumes"], "tmp")["emptyDir"]

    (service,) = component(docs, "Service", "store")
    assert service["metadata"]["name"] == "loader-store"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8700, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    (policy,) = component(docs, "NetworkPolicy", "store")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8700}]
    (peer,) = rule["from"]
    assert peer["podSelector"] == {"matchLabels": {"loader.dev/client": "true"}}
    if case == "webhook-own-tls":
        assert "namespaceSelector" not in peer  # null: the release namespace only
    else:
        assert peer["namespaceSelector"] == {}


def test_agent_pods_use_a_memory_volume_and_probe_healthz_and_readyz(
    rendered: tuple[str, str, list[Any]],
) -> None:
    case, _, docs = rendered
    agents = [
        (name, spec)
        for name, spec in pod_specs(docs)
        if any(c["name"] == "loader-agent" for c in spec["containers"])
    ]
    if "exampleApp.enabled=true" in CASES[case] or "spice-app" in case:
        assert agents, case
    walkthrough = "spice-app" in case
    for name, spec in agents:
        volume = named(spec["volumes"], "loader-secrets")
        assert volume["emptyDir"]["medium"] == "Memory", name
        agent = named(spec["containers"], "loader-agent")
        render_once = named(spec["initContainers"], "loader-render")
        assert render_once["args"] == ["render", "--once"]
        assert agent["args"] == ["agent"]
        for c in (agent, render_once):
            assert named(c["volumeMounts"], "loader-secrets")["mountPath"] == "/secrets"
            token_mount = named(c["volumeMounts"], "loader-token")["mountPath"]
            if walkthrough:  # the spice-app example keeps its token Secret (auth: token)
                assert env_of(c)["LOADER_TOKEN_FILE"] == "/var/run/secrets/loader/token"
                assert token_mount == "/var/run/secrets/loader"
            else:  # auth=jwt by default: the projected service-account token
                assert env_of(c)["LOADER_AUTH"] == "jwt"
                assert env_of(c)["LOADER_JWT_FILE"] == DEFAULT_JWT_FILE
                assert token_mount == "/var/run/secrets/tokens"
                assert "LOADER_TOKEN_FILE" not in env_of(c)
        live = agent["livenessProbe"]["exec"]["command"]
        ready = agent["readinessProbe"]["exec"]["command"]
        assert live[:2] == ["python", "-c"]
        assert "http://127.0.0.1:8701/healthz" in live[2]
        assert "http://127.0.0.1:8701/readyz" in ready[2]
        assert env_of(agent)["LOADER_LISTEN"] == "127.0.0.1:8701"
        token_volume = named(spec["volumes"], "loader-token")
        if walkthrough:
            assert token_volume["secret"]["secretName"] == "loader-agent-token"
        else:
            assert token_volume["projected"]["sources"] == [
                {
                    "serviceAccountToken": {
                        "audience": "loader-store",
                        "expirationSeconds": 600,
                        "path": "loader",
                    }
                }
            ]
        for c in spec["containers"]:
            if c["name"] != "loader-agent":
                mount = named(c["volumeMounts"], "loader-secrets")
                assert mount["readOnly"] is True
        deployment = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["loader.dev/client"] == "true"


# -- particular renderings ----------------------------------------------------------------------


def test_sqlite_default_uses_a_kept_claim_and_recreate() -> None:
    _, docs = render(*MASTER)
    (deployment,) = component(docs, "Deployment", "store")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    assert env_of(named(spec["containers"], "store"))["LOADER_DATA_DIR"] == "/var/lib/loader"
    (claim,) = of_kind(docs, "PersistentVolumeClaim")
    assert named(spec["volumes"], "data")["persistentVolumeClaim"] == {
        "claimName": claim["metadata"]["name"]
    }
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]
    assert not of_kind(docs, "MutatingWebhookConfiguration")
    assert [d["kind"] for d in docs if "example" in d["metadata"]["name"]] == []


def test_postgres_example_runs_two_replicas_from_a_secret_url() -> None:
    _, docs = render("-f", str(CHART / "examples" / "postgres.yaml"))
    (deployment,) = component(docs, "Deployment", "store")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    spec = deployment["spec"]["template"]["spec"]
    volume = named(spec["volumes"], "database")["secret"]
    assert volume == {
        "secretName": "loader-database",
        "defaultMode": 0o400,
        "items": [{"key": "url", "path": "url"}],
    }
    for c in containers(spec):
        env = env_of(c)
        assert "LOADER_DATABASE_URL" not in env  # never the URL itself in the environment
        mount = {m["name"]: m for m in c["volumeMounts"]}["database"]
        assert mount["readOnly"] is True
        assert env["LOADER_DATABASE_URL_FILE"] == f"{mount['mountPath']}/url"
        assert "LOADER_DATA_DIR" not in env
    assert not of_kind(docs, "PersistentVolumeClaim")
    assert "data" not in {v["name"] for v in spec["volumes"]}


def test_the_store_settings_the_postgres_chart_gives(tmp_path: Path) -> None:
    """The store container's flags, variables and mounted files load as real StoreSettings: the
    URL from its mounted file, the master key's path, the listen address."""
    _, docs = render("-f", str(CHART / "examples" / "postgres.yaml"))
    (deployment,) = component(docs, "Deployment", "store")
    spec = deployment["spec"]["template"]["spec"]
    store = named(spec["containers"], "store")
    url = "postgresql://loader:pw@postgres.db.svc:5432/loader"
    # Each mount becomes a directory under tmp_path holding what its Secret's items put there.
    volumes = {v["name"]: v for v in spec["volumes"]}
    moved: dict[str, str] = {}
    for mount in store["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        here = tmp_path / mount["name"]
        here.mkdir()
        for item in secret["items"]:
            (here / item["path"]).write_text(url + "\n" if item["key"] == "url" else "key\n")
        moved[mount["mountPath"]] = str(here)
    env = {}
    for name, value in env_of(store).items():
        for mount_path, here in moved.items():
            value = value.replace(mount_path, here) if isinstance(value, str) else value
        env[name] = value
    flags = dict(zip(store["args"][2::2], store["args"][3::2], strict=True))
    settings = StoreSettings.from_environ(
        env, **{k[2:].replace("-", "_"): v for k, v in flags.items()}
    )
    assert settings.db_url == url
    assert url not in repr(settings)
    assert settings.key_file == Path(moved["/etc/loader/master-key"]) / "master.key"
    assert settings.listen == "0.0.0.0:8700" and settings.data_dir is None


def test_webhook_manifests_and_the_settings_they_give_it() -> None:
    """The MutatingWebhookConfiguration points at the webhook's Service, fails open, and the
    Deployment's flags and LOADER_WEBHOOK_* variables load as real WebhookSettings."""
    _, docs = render(*CASES["everything"])
    (config,) = of_kind(docs, "MutatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    (service,) = component(docs, "Service", "webhook")
    assert hook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert "kube-system" in json.dumps(hook["namespaceSelector"])
    (certificate,) = of_kind(docs, "Certificate")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    (deployment,) = component(docs, "Deployment", "webhook")
    spec = deployment["spec"]["template"]["spec"]
    webhook = named(spec["containers"], "webhook")
    assert (
        named(spec["volumes"], "tls")["secret"]["secretName"] == certificate["spec"]["secretName"]
    )
    for probe in ("livenessProbe", "readinessProbe"):
        assert webhook[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}

    args = webhook["args"]
    assert args[0] == "webhook"
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    env = {k: v for k, v in env_of(webhook).items() if k.startswith("LOADER_WEBHOOK_")}
    settings = WebhookSettings.from_environ(
        env, **{k[2:].replace("-", "_"): v for k, v in flags.items()}
    )
    assert settings.store_url == "https://loader-store.loader.svc:8700"
    assert settings.image == "secret-loader:0.1.0"
    assert settings.token_secret == "loader-agent-token"
    assert (settings.auth, settings.token_audience, settings.token_expiration) == (
        "jwt",
        "loader-store",
        600,
    )
    assert settings.listen == "0.0.0.0:8443"
    assert settings.label == ("loader.dev/client", "true")
    assert str(settings.tls_cert).startswith("/etc/loader/webhook-tls/")
    store = named(
        component(docs, "Deployment", "store")[0]["spec"]["template"]["spec"]["containers"], "store"
    )
    assert store["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--tls-cert" in store["args"]

    _, own = render(*CASES["webhook-own-tls"])
    (config,) = of_kind(own, "MutatingWebhookConfiguration")
    assert config["webhooks"][0]["clientConfig"]["caBundle"]
    assert "annotations" not in config["metadata"]
    assert not of_kind(own, "Certificate")


def test_agent_auth_token_keeps_the_token_secret() -> None:
    """agent.auth=token: the example app's agent mounts the token Secret instead of a projected
    token, and the webhook is told to do the same."""
    _, docs = render(
        *CASES["everything"], "--set", "agent.auth=token", "--set", "agent.tokenSecret=app-tok"
    )
    for _, spec in pod_specs(docs):
        if any(c["name"] == "loader-agent" for c in spec["containers"]):
            assert named(spec["volumes"], "loader-token")["secret"]["secretName"] == "app-tok"
            env = env_of(named(spec["containers"], "loader-agent"))
            assert env["LOADER_TOKEN_FILE"] == "/var/run/secrets/loader/token"
            assert "LOADER_AUTH" not in env
    (webhook,) = component(docs, "Deployment", "webhook")
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["LOADER_WEBHOOK_AUTH"] == "token"


def test_store_jwks_configmap_is_mounted_read_only() -> None:
    _, docs = render(*MASTER, "--set", "store.jwksConfigMap=cluster-jwks")
    (deployment,) = component(docs, "Deployment", "store")
    spec = deployment["spec"]["template"]["spec"]
    assert named(spec["volumes"], "jwks")["configMap"]["name"] == "cluster-jwks"
    mount = named(named(spec["containers"], "store")["volumeMounts"], "jwks")
    assert mount == {"name": "jwks", "mountPath": "/etc/loader/jwks", "readOnly": True}
    _, plain = render(*MASTER)
    (deployment,) = component(plain, "Deployment", "store")
    assert all(v["name"] != "jwks" for v in deployment["spec"]["template"]["spec"]["volumes"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "masterKey.existingSecret"),
        ([*MASTER, "--set", "replicas=2"], "database.existingSecret"),
        ([*MASTER, "--set", "webhook.enabled=true"], "webhook.certManager.enabled"),
        ([*MASTER, "--set", "exampleApp.enabled=true"], "exampleApp.app"),
        (
            [*MASTER, "--set", "masterKey.key=" + base64.b64encode(bytes(range(32))).decode()],
            "NAME of the key",
        ),
    ],
    ids=["no-master-key", "sqlite-replicas", "webhook-no-cert", "example-no-app", "key-in-values"],
)
def test_rendering_refuses_what_cannot_work(values: list[str], message: str) -> None:
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values)
    assert out.returncode != 0
    assert message in out.stderr
    # helm lint turns `fail` into an INFO line by design (a chart with required values still
    # lints); it must still say why.
    lint = helm("lint", str(CHART), *values)
    assert message in lint.stdout + lint.stderr


def test_helpers_render_from_a_users_own_chart(tmp_path: Path) -> None:
    """A user's chart with loader as a subchart includes loader.initContainer,
    loader.agentSidecar, loader.secretsVolume, loader.secretsMount and loader.agentVolumes with
    explicit image and storeUrl (no "root"); a missing app id fails with a clear message."""
    parent = tmp_path / "myapp"
    (parent / "templates").mkdir(parents=True)
    (parent / "charts").mkdir()
    shutil.copytree(CHART, parent / "charts" / "loader")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: myapp\nversion: 1.0.0\n"
        "dependencies:\n  - name: loader\n    version: 0.1.0\n"
    )
    (parent / "values.yaml").write_text(
        "app: 4\nloader:\n  masterKey:\n    existingSecret: loader-master-key\n"
    )
    (parent / "templates" / "deployment.yaml").write_text(
        """{{- $agent := dict "image" "registry.example/secret-loader:0.1.0"
      "storeUrl" "http://loader-store.loader.svc:8700" "app" .Values.app "environment" "prod"
      "tokenSecret" "myapp-loader-token" "format" "shell" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
spec:
  selector: {matchLabels: {app: myapp}}
  template:
    metadata:
      labels: {app: myapp, loader.dev/client: "true"}
    spec:
      initContainers:
        {{- include "loader.initContainer" $agent | nindent 8 }}
      containers:
        - name: app
          image: myapp:1
          command: ["loader", "run", "--from-file", "/secrets/app.env", "--", "myapp"]
          volumeMounts:
            {{- include "loader.secretsMount" (dict) | nindent 12 }}
        {{- include "loader.agentSidecar" $agent | nindent 8 }}
      volumes:
        {{- include "loader.secretsVolume" (dict) | nindent 8 }}
        {{- include "loader.agentVolumes" $agent | nindent 8 }}
"""
    )
    out = helm("template", "myapp", str(parent), "--namespace", "apps")
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    (mine,) = [d for d in docs if d["metadata"]["name"] == "myapp"]
    spec = mine["spec"]["template"]["spec"]
    init = named(spec["initContainers"], "loader-render")
    agent = named(spec["containers"], "loader-agent")
    for c in (init, agent):
        env = env_of(c)
        assert c["image"] == "registry.example/secret-loader:0.1.0"
        assert env["LOADER_STORE_URL"] == "http://loader-store.loader.svc:8700"
        assert env["LOADER_APP"] == "4"
        assert env["LOADER_ENVIRONMENT"] == "prod"
        assert env["LOADER_FORMAT"] == "shell"
        assert "LOADER_TEMPLATE" not in env
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert named(spec["volumes"], "loader-secrets")["emptyDir"]["medium"] == "Memory"
    assert named(spec["volumes"], "loader-token")["secret"]["secretName"] == "myapp-loader-token"
    assert named(spec["containers"][0]["volumeMounts"], "loader-secrets")["readOnly"] is True

    (parent / "values.yaml").write_text(
        "app: nope\nloader:\n  masterKey:\n    existingSecret: loader-master-key\n"
    )
    out = helm("template", "myapp", str(parent))
    assert out.returncode != 0
    assert '"app" must be the app id' in out.stderr


# -- the rendered wiring, run for real ----------------------------------------------------------


def runnable(
    container: dict[str, Any], paths: dict[str, Path], replace: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """A rendered container's exact command and environment as a local process: ``python`` is
    this interpreter, mount points are local directories, ``replace`` rewrites whole values."""

    def local(value: str) -> str:
        value = replace.get(value, value)
        for mount, path in paths.items():
            if value == mount or value.startswith(mount + "/"):
                return str(path) + value[len(mount) :]
        return value

    argv = [sys.executable if a == "python" else local(a) for a in container["command"]]
    argv += [local(a) for a in container.get("args", [])]
    env = {k: local(v) for k, v in env_of(container).items() if isinstance(v, str)}
    return argv, loader_env(**env)


def run(container: dict[str, Any], paths: dict[str, Path], replace: dict[str, str]) -> str:
    argv, env = runnable(container, paths, replace)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def scratch(tmp_path: Path, shm: Path) -> Iterator[dict[str, Path]]:
    paths = {
        "/var/lib/loader": tmp_path / "data",
        "/etc/loader/master-key": tmp_path / "master-key",
        "/tmp": tmp_path / "tmp",
        "/secrets": shm,
        "/var/run/secrets/loader": tmp_path / "token",
        "/etc/loader/template": tmp_path / "template",
    }
    for path in paths.values():
        path.mkdir(exist_ok=True)
    yield paths


def test_rendered_store_and_example_app_work_together(scratch: dict[str, Path]) -> None:
    """Following docs/kubernetes.md with the spice-app example rendered by helm:
    1. the master key Secret's file (base64 of 32 random bytes);
    2. the store's init container (`store migrate`) creates the database, twice without harm;
    3. the store container serves, and its readiness probe path (/v1/ready) answers 200;
    4. `kubectl exec ... loader store token create --scopes '*'` (the container's environment,
       no --data-dir) mints an admin token; the app and its secret are created over the API;
    5. the agent token (`--scopes secrets:reveal --app N`) goes into the token Secret's file;
    6. the example app's init container renders the spicepod ConfigMap into the memory volume
       where Spice reads it; the agent sidecar passes its probes and follows a change."""
    _, docs = render("-f", str(CHART / "examples" / "spice-app.yaml"), "--set", "exampleApp.app=1")
    (store_deployment,) = component(docs, "Deployment", "store")
    store_spec = store_deployment["spec"]["template"]["spec"]
    key_file = scratch["/etc/loader/master-key"] / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    # In the pod the kubelet leaves it root-owned 0440 for the store's fsGroup; here the store
    # runs as root, whose own key must be 0600 or tighter (the fsGroup case is run for real in
    # tests/adversarial/test_store_file_modes.py).
    key_file.chmod(0o400)

    port = free_port()
    replace = {"0.0.0.0:8700": f"127.0.0.1:{port}"}
    migrate = named(store_spec["initContainers"], "migrate")
    run(migrate, scratch, replace)
    run(migrate, scratch, replace)
    assert (scratch["/var/lib/loader"] / "loader.db").exists()

    store_container = named(store_spec["containers"], "store")
    argv, env = runnable(store_container, scratch, replace)
    store: Proc = spawn(argv, scratch["/tmp"] / "store.log", env)
    try:
        url = wait_for_line(store, r"listening on (http://\S+)")
        probe_path = store_container["readinessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(url + probe_path, timeout=10) as r:
            assert r.status == 200

        admin = json.loads(run_exec(store_container, scratch, replace, "--scopes", "*", "--json"))[
            "token"
        ]
        client = HttpClient(url, token=admin)
        app = client.call("POST", "/v1/apps", {"name": "spice-demo"}).json()["id"]
        assert app == 1
        client.call(
            "POST", f"/v1/apps/{app}/secrets", {"name": "SPICE_API_KEY", "value": "s3cr3t:#1"}
        )
        agent_token = run_exec(
            store_container, scratch, replace, "--scopes", "secrets:reveal", "--app", str(app)
        )
        (scratch["/var/run/secrets/loader"] / "token").write_text(agent_token)

        (configmap,) = component(docs, "ConfigMap", "example-app")
        (scratch["/etc/loader/template"] / "spicepod.yaml").write_text(
            configmap["data"]["spicepod.yaml"]
        )
        (example,) = component(docs, "Deployment", "example-app")
        spec = example["spec"]["template"]["spec"]
        store_url = env_of(named(spec["initContainers"], "loader-render"))["LOADER_STORE_URL"]
        assert store_url == "http://loader-store.loader.svc:8700"
        app_replace = {store_url: url}
        run(named(spec["initContainers"], "loader-render"), scratch, app_replace)
        secrets_dir = scratch["/secrets"]
        assert named(spec["containers"], "spice")["workingDir"] == "/secrets"
        spicepod = yaml.safe_load((secrets_dir / "spicepod.yaml").read_text())
        assert spicepod["runtime"]["auth"]["api-key"]["keys"] == ["s3cr3t:#1"]
        assert dotenv_values(secrets_dir / "app.env") == {"SPICE_API_KEY": "s3cr3t:#1"}

        sidecar = named(spec["containers"], "loader-agent")
        argv, env = runnable(sidecar, scratch, app_replace)
        agent_port = free_port()
        env["LOADER_LISTEN"] = f"127.0.0.1:{agent_port}"
        agent = spawn(argv, scratch["/tmp"] / "agent.log", env)
        try:
            wait_for_line(agent, r"listening on (\S+)")
            for probe in ("readinessProbe", "livenessProbe"):
                command = [
                    sys.executable if a == "python" else a.replace(":8701/", f":{agent_port}/")
                    for a in sidecar[probe]["exec"]["command"]
                ]
                deadline = time.monotonic() + 30
                while subprocess.run(
                    command, capture_output=True, timeout=30, check=False
                ).returncode:
                    assert time.monotonic() < deadline, agent.logs()
                    time.sleep(0.05)
            client.call("POST", f"/v1/apps/{app}/secrets", {"name": "SPICE_API_KEY", "value": "v2"})
            deadline = time.monotonic() + 30
            while '"v2"' not in (secrets_dir / "spicepod.yaml").read_text():
                assert time.monotonic() < deadline, agent.logs()
                time.sleep(0.05)
        finally:
            agent.stop()
        client.close()
    finally:
        store.stop()
    logs = store.logs() + store.output()
    assert admin not in logs
    assert "s3cr3t" not in logs


def run_exec(
    container: dict[str, Any], paths: dict[str, Path], replace: dict[str, str], *args: str
) -> str:
    """`kubectl exec deploy/loader-store -c store -- loader store token create ARGS`: the
    container's environment, the `loader` command (this interpreter's), no --data-dir."""
    _, env = runnable(container, paths, replace)
    out = subprocess.run(
        [sys.executable, "-m", "loader", "store", "token", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_store_tls_rendering_serves_https_with_the_mounted_pair(
    scratch: dict[str, Path], tmp_path: Path
) -> None:
    """store.tls.existingSecret: the rendered flags point at the Secret's tls.crt/tls.key, and
    the store serves HTTPS with them."""
    _, docs = render(*MASTER, "--set", "store.tls.existingSecret=loader-store-tls")
    (deployment,) = component(docs, "Deployment", "store")
    spec = deployment["spec"]["template"]["spec"]
    assert named(spec["volumes"], "tls")["secret"]["secretName"] == "loader-store-tls"
    ca = trustme.CA()
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tls_dir / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tls_dir / "tls.key"))
    paths = {**scratch, "/etc/loader/tls": tls_dir}
    key_file = scratch["/etc/loader/master-key"] / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    # In the pod the kubelet leaves it root-owned 0440 for the store's fsGroup; here the store
    # runs as root, whose own key must be 0600 or tighter (the fsGroup case is run for real in
    # tests/adversarial/test_store_file_modes.py).
    key_file.chmod(0o400)
    port = free_port()
    replace = {"0.0.0.0:8700": f"127.0.0.1:{port}"}
    run(named(spec["initContainers"], "migrate"), paths, replace)
    argv, env = runnable(named(spec["containers"], "store"), paths, replace)
    store = spawn(argv, tmp_path / "store.log", env)
    try:
        url = wait_for_line(store, r"listening on (https://\S+)")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        with urllib.request.urlopen(url + "/v1/health", context=ctx, timeout=10) as r:
            assert json.loads(r.read()) == {"status": "ok"}
    finally:
        store.stop()
