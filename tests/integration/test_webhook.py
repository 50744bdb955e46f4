"""The mutating admission webhook: real AdmissionReviews posted to the real aiohttp app (and to
a real ``loader webhook`` process over TLS); every patch is applied with ``jsonpatch`` to the
pod it was made for, and the injected containers are run for real against a real store."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import trustme
import yaml
from dotenv import dotenv_values

from loader.httpclient import HttpClient
from loader.webhook.inject import TEMPLATE_DIR, TOKEN_DIR
from loader.webhook.server import create_app
from loader.webhook.settings import WebhookSettings, load_settings
from loader.workload import DEFAULT_JWT_FILE
from tests.issuer import ISSUER, Issuer
from tests.procs import (
    LOADER,
    Proc,
    free_port,
    init_store,
    loader_env,
    run_loader,
    spawn,
    start_store,
    wait_for_line,
)

IMAGE = "registry.example/secret-loader:0.1.0"
STORE = "http://loader-store.loader.svc:8700"
Post = Callable[..., Awaitable[Any]]


# -- builders ---------------------------------------------------------------------------------


def settings(**extra: Any) -> WebhookSettings:
    return load_settings(image=IMAGE, store_url=STORE, insecure=True, **extra)


def make_pod(
    annotations: dict[str, str] | None = None,
    *,
    volumes: bool = True,
    labels: bool = True,
    init_containers: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod as the API server hands it to mutating webhooks (defaulted, ServiceAccount token
    volume added by then), from a Deployment: generateName, no name yet."""
    token_mount = {
        "name": "kube-api-access-x7k2p",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    metadata: dict[str, Any] = {"generateName": "spice-7d9f8c-", "namespace": "apps"}
    if annotations is not None:
        metadata["annotations"] = annotations
    if labels:
        metadata["labels"] = {"app": "spice", "pod-template-hash": "7d9f8c"}
    spec: dict[str, Any] = {
        "containers": containers
        or [
            {
                "name": "spice",
                "image": "spiceai/spiceai:1.11.5",
                "workingDir": "/secrets",
                "volumeMounts": [token_mount] if volumes else [],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
    }
    if volumes:
        spec["volumes"] = [
            {
                "name": "kube-api-access-x7k2p",
                "projected": {"sources": [{"serviceAccountToken": {}}]},
            }
        ]
    if init_containers is not None:
        spec["initContainers"] = init_containers
    if security is not None:
        spec["securityContext"] = security
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def admission_review(obj: Any, *, kind: str = "Pod", operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "namespace": "apps",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


ANNOTATED = {
    "loader.dev/inject": "true",
    "loader.dev/app": "7",
    "loader.dev/environment": "prod",
    "loader.dev/template": "spice-spicepod",
}


def ops_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def patched(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(pod, ops_of(response), in_place=False)
    return result


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [i for i in items if i["name"] == name]
    assert len(found) == 1, f"{name} in {[i['name'] for i in items]}"
    return found[0]


def assert_hardened(container: dict[str, Any]) -> None:
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]) == {"requests", "limits"}


@pytest.fixture
def post(aiohttp_client: Any) -> Post:
    """POST an AdmissionReview to the in-process app; returns its ``response`` (HTTP 200)."""
    clients: dict[WebhookSettings, Any] = {}

    async def go(review: dict[str, Any], conf: WebhookSettings | None = None) -> Any:
        conf = conf or settings()
        if conf not in clients:
            clients[conf] = await aiohttp_client(create_app(conf))
        r = await clients[conf].post("/mutate", json=review)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["apiVersion"] == "admission.k8s.io/v1"
        assert body["kind"] == "AdmissionReview"
        assert body["response"]["uid"] == review["request"]["uid"]
        return body["response"]

    return go


# -- injection ----------------------------------------------------------------------------------


async def test_webhook_injects_volume_init_container_sidecar_and_mounts(post: Post) -> None:
    """1. an annotated pod (with a ServiceAccount volume, no init containers) is allowed with a
    JSONPatch; 2. applied, the pod has the memory volume, the token Secret and the template
    ConfigMap as volumes, `render --once` as its init container, the agent as a sidecar, the
    read-only mount in the app container, the injected annotation and the client label;
    3. everything the pod had is still there."""
    pod = make_pod(ANNOTATED)
    response = await post(admission_review(pod))
    assert response["allowed"] is True
    result = patched(pod, response)
    spec = result["spec"]

    volumes = spec["volumes"]
    assert volumes[0]["name"] == "kube-api-access-x7k2p"
    assert by_name(volumes, "loader-secrets")["emptyDir"]["medium"] == "Memory"
    token = by_name(volumes, "loader-token")["projected"]
    assert token["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "loader-store",
                "expirationSeconds": 600,
                "path": "loader",
            }
        }
    ]
    assert by_name(volumes, "loader-template")["configMap"]["name"] == "spice-spicepod"

    (init,) = spec["initContainers"]
    assert init["name"] == "loader-render"
    assert init["image"] == IMAGE
    assert init["command"] + init["args"] == ["python", "-m", "loader", "render", "--once"]
    env = env_of(init)
    assert env["LOADER_STORE_URL"] == STORE
    assert env["LOADER_APP"] == "7"
    assert env["LOADER_ENVIRONMENT"] == "prod"
    assert env["LOADER_FORMAT"] == "dotenv"
    assert env["LOADER_OUTPUT"] == "/secrets/app.env"
    assert (env["LOADER_AUTH"], env["LOADER_JWT_FILE"]) == ("jwt", DEFAULT_JWT_FILE)
    assert "LOADER_TOKEN_FILE" not in env
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert f"{mounts['loader-token']}/loader" == DEFAULT_JWT_FILE
    assert env["LOADER_TEMPLATE"] == f"{TEMPLATE_DIR}/spicepod.yaml"
    assert env["LOADER_TEMPLATE_OUTPUT"] == "/secrets/spicepod.yaml"
    assert "LOADER_TOKEN" not in env
    assert_hardened(init)

    app, agent = spec["containers"]
    assert app["name"] == "spice"
    assert app["volumeMounts"][0]["name"] == "kube-api-access-x7k2p"
    assert app["volumeMounts"][1] == {
        "name": "loader-secrets",
        "mountPath": "/secrets",
        "readOnly": True,
    }
    assert agent["name"] == "loader-agent"
    assert agent["args"] == ["agent"]
    assert env_of(agent)["LOADER_LISTEN"] == "127.0.0.1:8701"
    assert {k: v for k, v in env_of(agent).items() if k != "LOADER_LISTEN"} == {
        k: v for k, v in env.items() if k != "LOADER_TIMEOUT"
    }
    assert "/healthz" in agent["livenessProbe"]["exec"]["command"][-1]
    assert "/readyz" in agent["readinessProbe"]["exec"]["command"][-1]
    assert_hardened(agent)
    for container in (init, agent):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/secrets"]["name"] == "loader-secrets"
        assert mounts["/var/run/secrets/tokens"]["readOnly"] is True

    assert result["metadata"]["annotations"]["loader.dev/injected"] == "true"
    assert result["metadata"]["labels"] == {
        "app": "spice",
        "pod-template-hash": "7d9f8c",
        "loader.dev/client": "true",
    }
    assert result["metadata"]["annotations"]["loader.dev/app"] == "7"


async def test_webhook_reinvocation_is_a_no_op(post: Post) -> None:
    """1. inject; 2. the patched pod sent again (reinvocationPolicy: IfNeeded) is allowed with
    no patch; 3. so is a pod injected once and then given another container by someone else."""
    pod = make_pod(ANNOTATED)
    once = patched(pod, await post(admission_review(pod)))
    again = await post(admission_review(once))
    assert again["allowed"] is True
    assert "patch" not in again
    assert "patchType" not in again
    once["spec"]["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2"})
    third = await post(admission_review(once))
    assert third["allowed"] is True
    assert "patch" not in third


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {"prometheus.io/scrape": "true"},
        {"loader.dev/inject": "false", "loader.dev/app": "7"},
        {"loader.dev/app": "7"},
    ],
    ids=["no-annotations", "empty", "other", "inject-false", "app-only"],
)
async def test_webhook_leaves_pods_without_the_annotation_alone(
    post: Post, annotations: dict[str, str] | None
) -> None:
    response = await post(admission_review(make_pod(annotations)))
    assert response == {"uid": response["uid"], "allowed": True}


async def test_webhook_bare_pod_gets_whole_arrays(post: Post) -> None:
    """A pod with no volumes, no init containers, no mounts and no labels: each is added as a
    whole array/object (``/-`` would fail on a missing array), and the patch applies."""
    pod = make_pod(ANNOTATED, volumes=False, labels=False)
    del pod["spec"]["containers"][0]["volumeMounts"]
    response = await post(admission_review(pod))
    ops = ops_of(response)
    paths = {op["path"]: op for op in ops}
    assert isinstance(paths["/spec/volumes"]["value"], list)
    assert [v["name"] for v in paths["/spec/volumes"]["value"]] == [
        "loader-secrets",
        "loader-token",
        "loader-template",
    ]
    assert [c["name"] for c in paths["/spec/initContainers"]["value"]] == ["loader-render"]
    assert paths["/spec/containers/0/volumeMounts"]["value"][0]["name"] == "loader-secrets"
    assert paths["/metadata/labels"]["value"] == {"loader.dev/client": "true"}
    assert all(op["op"] == "add" for op in ops)
    result = patched(pod, response)
    assert [c["name"] for c in result["spec"]["containers"]] == ["spice", "loader-agent"]
    assert result["metadata"]["labels"] == {"loader.dev/client": "true"}


async def test_webhook_appends_to_existing_arrays(post: Post) -> None:
    """A pod with init containers, volumes, mounts and two app containers: ours are appended
    with ``/-`` (the pod's own init containers run first), nothing of the pod's is replaced."""
    migrate = {
        "name": "migrate",
        "image": "app:1",
        "volumeMounts": [{"name": "data", "mountPath": "/d"}],
    }
    containers = [
        {"name": "web", "image": "app:1", "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
        {"name": "worker", "image": "app:1"},
    ]
    pod = make_pod(ANNOTATED, init_containers=[migrate], containers=containers)
    pod["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
    response = await post(admission_review(pod))
    ops = ops_of(response)
    assert {op["path"] for op in ops} >= {
        "/spec/volumes/-",
        "/spec/initContainers/-",
        "/spec/containers/0/volumeMounts/-",
        "/spec/containers/1/volumeMounts",
        "/spec/containers/-",
    }
    result = patched(pod, response)
    spec = result["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["migrate", "loader-render"]
    assert spec["initContainers"][0] == migrate
    assert [c["name"] for c in spec["containers"]] == ["web", "worker", "loader-agent"]
    assert [m["name"] for m in spec["containers"][0]["volumeMounts"]] == ["data", "loader-secrets"]
    assert [m["name"] for m in spec["containers"][1]["volumeMounts"]] == ["loader-secrets"]
    assert [v["name"] for v in spec["volumes"]] == [
        "kube-api-access-x7k2p",
        "data",
        "loader-secrets",
        "loader-token",
        "loader-template",
    ]


@pytest.mark.parametrize(
    ("annotations", "names"),
    [
        ({"loader.dev/app": "abc"}, "loader.dev/app"),
        ({"loader.dev/app": "0"}, "loader.dev/app"),
        ({"loader.dev/app": "-3"}, "loader.dev/app"),
        ({"loader.dev/app": "99999999999999999999"}, "loader.dev/app"),
        ({}, "loader.dev/app is missing"),
        ({"loader.dev/app": "7", "loader.dev/environment": "prod env"}, "loader.dev/environment"),
        ({"loader.dev/app": "7", "loader.dev/format": "yaml"}, "loader.dev/format"),
        ({"loader.dev/app": "7", "loader.dev/template": "Spice_Pod"}, "loader.dev/template"),
        ({"loader.dev/app": "7", "loader.dev/template-key": "a/b"}, "loader.dev/template-key"),
        ({"loader.dev/app": "7", "loader.dev/token-secret": "UPPER"}, "loader.dev/token-secret"),
    ],
)
async def test_webhook_denies_bad_annotations_with_a_message(
    post: Post, annotations: dict[str, str], names: str
) -> None:
    pod = make_pod({"loader.dev/inject": "true", **annotations})
    response = await post(admission_review(pod))
    assert response["allowed"] is False
    assert "patch" not in response
    assert response["status"]["code"] == 400
    assert names in response["status"]["message"]


async def test_webhook_denies_what_cannot_work(post: Post) -> None:
    """hostNetwork (the agent's loopback would be the node's), a container already named like
    ours, a mount already at the mount path: denied, each with its reason."""
    pod = make_pod(ANNOTATED)
    pod["spec"]["hostNetwork"] = True
    response = await post(admission_review(pod))
    assert response["allowed"] is False
    assert "hostNetwork" in response["status"]["message"]

    pod = make_pod(ANNOTATED)
    pod["spec"]["containers"].append({"name": "loader-agent", "image": "x"})
    response = await post(admission_review(pod))
    assert response["allowed"] is False
    assert "loader-agent" in response["status"]["message"]

    pod = make_pod(ANNOTATED)
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "cfg", "mountPath": "/secrets"})
    response = await post(admission_review(pod))
    assert response["allowed"] is False
    assert "/secrets" in response["status"]["message"]


async def test_webhook_annotations_and_settings_shape_the_injection(post: Post) -> None:
    """json format -> app.json; a per-pod token Secret and template key; the webhook's own
    mount path, agent port, CA ConfigMap, resources and client label."""
    conf = settings(
        mount_path="/run/app-secrets",
        agent_port=9701,
        ca_configmap="loader-ca",
        client_label="team.example/loader=yes",
        memory_limit="128Mi",
        token_secret="default-token",
    )
    pod = make_pod(
        {
            "loader.dev/inject": "true",
            "loader.dev/app": "12",
            "loader.dev/format": "json",
            "loader.dev/template": "cfg",
            "loader.dev/template-key": "config.json",
            "loader.dev/token-secret": "app-12-token",
        }
    )
    result = patched(pod, await post(admission_review(pod), conf))
    agent = result["spec"]["containers"][-1]
    env = env_of(agent)
    assert env["LOADER_OUTPUT"] == "/run/app-secrets/app.json"
    assert env["LOADER_FORMAT"] == "json"
    assert env["LOADER_ENVIRONMENT"] == "default"
    assert env["LOADER_TEMPLATE"] == f"{TEMPLATE_DIR}/config.json"
    assert env["LOADER_TEMPLATE_OUTPUT"] == "/run/app-secrets/config.json"
    assert env["LOADER_CA_FILE"] == "/etc/loader/ca/ca.crt"
    assert env["LOADER_LISTEN"] == "127.0.0.1:9701"
    assert "127.0.0.1:9701/readyz" in agent["readinessProbe"]["exec"]["command"][-1]
    assert agent["resources"]["limits"]["memory"] == "128Mi"
    volumes = result["spec"]["volumes"]
    assert by_name(volumes, "loader-token")["secret"]["secretName"] == "app-12-token"
    assert by_name(volumes, "loader-ca")["configMap"]["name"] == "loader-ca"
    assert result["spec"]["containers"][0]["volumeMounts"][-1]["mountPath"] == "/run/app-secrets"
    assert result["metadata"]["labels"]["team.example/loader"] == "yes"


async def test_webhook_auth_mode_projected_token_or_token_secret(post: Post) -> None:
    """auth=jwt (default): a projected token with the webhook's audience and expiry; the
    webhook set to auth=token mounts the Secret; a pod's loader.dev/auth overrides either; a
    bad loader.dev/auth is denied with a message naming it."""
    base = {"loader.dev/inject": "true", "loader.dev/app": "3"}

    async def injected(annotations: dict[str, str], conf: WebhookSettings) -> dict[str, Any]:
        pod = make_pod({**base, **annotations})
        result = patched(pod, await post(admission_review(pod), conf))
        volume = by_name(result["spec"]["volumes"], "loader-token")
        return {"volume": volume, "env": env_of(result["spec"]["containers"][-1])}

    jwt_conf = settings(token_audience="https://store.example", token_expiration=3600)
    got = await injected({}, jwt_conf)
    (source,) = got["volume"]["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "audience": "https://store.example",
        "expirationSeconds": 3600,
        "path": "loader",
    }
    assert got["env"]["LOADER_AUTH"] == "jwt" and "LOADER_TOKEN_FILE" not in got["env"]
    got = await injected({"loader.dev/auth": "token"}, jwt_conf)
    assert got["volume"]["secret"]["secretName"] == "loader-agent-token"
    assert (
        got["env"]["LOADER_TOKEN_FILE"] == f"{TOKEN_DIR}/token" and "LOADER_AUTH" not in got["env"]
    )
    token_conf = settings(auth="token")
    assert "secret" in (await injected({}, token_conf))["volume"]
    assert "projected" in (await injected({"loader.dev/auth": "jwt"}, token_conf))["volume"]
    pod = make_pod({**base, "loader.dev/auth": "password"})
    response = await post(admission_review(pod))
    assert response["allowed"] is False and "loader.dev/auth" in response["status"]["message"]


async def test_webhook_runs_the_agent_as_the_apps_uid(post: Post) -> None:
    """The agent writes 0600 files: injected containers take the app's non-root uid when its
    containers agree on one, else 65532 (an app running as root reads them anyway)."""

    async def uids(pod: dict[str, Any]) -> set[tuple[int, int]]:
        spec = patched(pod, await post(admission_review(pod)))["spec"]
        ours = [spec["initContainers"][-1], spec["containers"][-1]]
        return {
            (c["securityContext"]["runAsUser"], c["securityContext"]["runAsGroup"]) for c in ours
        }

    assert await uids(make_pod(ANNOTATED)) == {(65532, 65532)}
    assert await uids(make_pod(ANNOTATED, security={"runAsUser": 1000, "fsGroup": 2000})) == {
        (1000, 1000)
    }
    assert await uids(make_pod(ANNOTATED, security={"runAsUser": 1000, "runAsGroup": 3000})) == {
        (1000, 3000)
    }
    assert await uids(make_pod(ANNOTATED, security={"runAsUser": 0})) == {(65532, 65532)}
    two = [
        {"name": "a", "image": "x", "securityContext": {"runAsUser": 1000}},
        {"name": "b", "image": "x", "securityContext": {"runAsUser": 1001}},
    ]
    assert await uids(make_pod(ANNOTATED, containers=two)) == {(65532, 65532)}


async def test_webhook_admits_what_it_cannot_read_and_ignores_other_requests(
    post: Post, aiohttp_client: Any
) -> None:
    """Policy: a malformed object is admitted unchanged with a warning (refusing pods for the
    webhook's own trouble would be worse); non-pods and updates are not touched; a body that is
    not an AdmissionReview with a uid is HTTP 400 (the API server's failurePolicy decides)."""
    broken = make_pod(ANNOTATED)
    broken["spec"]["containers"] = "not-a-list"
    response = await post(admission_review(broken))
    assert response["allowed"] is True
    assert "patch" not in response
    assert "not injected" in response["warnings"][0]

    update = admission_review(make_pod(ANNOTATED), operation="UPDATE")
    assert await post(update) == {"uid": update["request"]["uid"], "allowed": True}
    service = admission_review({"apiVersion": "v1", "kind": "Service", "metadata": ANNOTATED})
    service["request"]["kind"]["kind"] = "Service"
    assert await post(service) == {"uid": service["request"]["uid"], "allowed": True}

    client = await aiohttp_client(create_app(settings()))
    for body in (b"{not json", b"[]", json.dumps({"kind": "AdmissionReview"}).encode()):
        r = await client.post("/mutate", data=body, headers={"Content-Type": "application/json"})
        assert r.status == 400
        assert (await r.json())["code"] == "invalid_request"
    no_uid = admission_review(make_pod(ANNOTATED))
    del no_uid["request"]["uid"]
    r = await client.post("/mutate", json=no_uid)
    assert r.status == 400
    v1beta1 = admission_review(make_pod(ANNOTATED))
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1"
    assert (await client.post("/mutate", json=v1beta1)).status == 400
    r = await client.get("/healthz")
    assert r.status == 200
    assert await r.json() == {"status": "ok"}
    assert (await client.get("/mutate")).status == 405


# -- the injected containers, run for real ------------------------------------------------------

VALUE = "k3y: 'single' #not-a-comment = tail"
TEMPLATE = """version: v1
kind: Spicepod
name: spice-demo
runtime:
  auth:
    api-key:
      enabled: true
      keys:
        - ${secrets:SPICE_API_KEY}
"""


class Live:
    def __init__(self, data: Path, proc: Proc, admin: str, app: int) -> None:
        self.data, self.proc, self.admin, self.app = data, proc, admin, app

    def put(self, name: str, value: str) -> None:
        client = HttpClient(self.proc.url, token=self.admin)
        path = f"/v1/apps/{self.app}/environments/prod/secrets"
        client.call("POST", path, {"name": name, "value": value})
        client.close()

    def trust_pods(self, jwks: Path) -> None:
        """A trust policy for the pods of namespace shop, service account api (the issuer's
        keys in ``jwks``), as docs/kubernetes.md shows it."""
        out = run_loader(
            "store", "trust", "create", "--data-dir", str(self.data), "--issuer", ISSUER,
            "--jwks-file", str(jwks), "--audience", "loader-store", "--k8s-namespace", "shop",
            "--k8s-service-account", "api", "--scopes", "secrets:reveal", "--app",
            str(self.app), "--env", "prod",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    data = tmp_path / "store"
    admin = init_store(data)
    proc = start_store(data)
    try:
        client = HttpClient(proc.url, token=admin)
        app = int(client.call("POST", "/v1/apps", {"name": "injected"}).json()["id"])
        client.call("POST", f"/v1/apps/{app}/environments", {"name": "prod"})
        client.close()
        live = Live(data, proc, admin, app)
        live.put("SPICE_API_KEY", VALUE)
        yield live
    finally:
        proc.stop()


def runnable(container: dict[str, Any], dirs: dict[str, Path]) -> tuple[list[str], dict[str, str]]:
    """The container's command and environment for a local process: ``python`` is this
    interpreter, the Secret and ConfigMap mount points are the given directories."""
    argv = [
        sys.executable if a == "python" else a
        for a in container["command"] + container.get("args", [])
    ]
    env = env_of(container)
    for key, value in env.items():
        for mount, local in dirs.items():
            if value.startswith(mount + "/"):
                env[key] = str(local) + value[len(mount) :]
    return argv, loader_env(**env)


def probe(container: dict[str, Any], which: str) -> int:
    command = container[which]["exec"]["command"]
    argv = [sys.executable if a == "python" else a for a in command]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def test_injected_containers_render_and_serve_against_a_real_store(
    live: Live, shm: Path, tmp_path: Path
) -> None:
    """1. the webhook patches a pod for the store's app (mount path on tmpfs, a free agent
    port); 2. the init container's exact command and environment, run against the real store,
    render the env file and the spicepod (values exact, files 0600); 3. the sidecar's, run as a
    process, passes its readiness and liveness probes (their exact exec commands); 4. a change
    in the store reaches the spicepod; 5. the sidecar gone, its liveness probe fails. The
    token is the pod's projected service-account token (auth=jwt), traded at the store under
    a trust policy for its namespace and service account."""
    from loader.webhook.inject import review

    port = free_port()
    conf = load_settings(
        image=IMAGE, store_url=live.proc.url, insecure=True, mount_path=str(shm), agent_port=port
    )
    pod = make_pod(
        {
            "loader.dev/inject": "true",
            "loader.dev/app": str(live.app),
            "loader.dev/environment": "prod",
            "loader.dev/template": "spice-spicepod",
        }
    )
    result = patched(pod, review(admission_review(pod), conf)["response"])
    init = result["spec"]["initContainers"][-1]
    sidecar = result["spec"]["containers"][-1]

    jwt_dir = os.path.dirname(DEFAULT_JWT_FILE)
    dirs = {jwt_dir: tmp_path / "token", TEMPLATE_DIR: tmp_path / "template"}
    for d in dirs.values():
        d.mkdir()
    issuer = Issuer()
    issuer.write_jwks(tmp_path / "jwks.json")
    live.trust_pods(tmp_path / "jwks.json")
    (dirs[jwt_dir] / "loader").write_text(issuer.sign() + "\n")
    (dirs[TEMPLATE_DIR] / "spicepod.yaml").write_text(TEMPLATE)

    argv, env = runnable(init, dirs)
    out = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert dotenv_values(shm / "app.env") == {"SPICE_API_KEY": VALUE}
    spicepod = yaml.safe_load((shm / "spicepod.yaml").read_text())
    assert spicepod["runtime"]["auth"]["api-key"]["keys"] == [VALUE]
    assert (shm / "spicepod.yaml").stat().st_mode & 0o777 == 0o600
    assert VALUE.encode() not in out.stdout + out.stderr

    argv, env = runnable(sidecar, dirs)
    agent = spawn(argv, tmp_path / "agent.log", env)
    try:
        wait_for_line(agent, r"listening on (\S+)")
        deadline = time.monotonic() + 30
        while probe(sidecar, "readinessProbe") != 0:
            assert time.monotonic() < deadline, agent.logs()
            time.sleep(0.05)
        assert probe(sidecar, "livenessProbe") == 0
        live.put("SPICE_API_KEY", "rotated-value")
        deadline = time.monotonic() + 30
        while "rotated-value" not in (shm / "spicepod.yaml").read_text():
            assert time.monotonic() < deadline, agent.logs()
            time.sleep(0.05)
    finally:
        agent.stop()
    assert probe(sidecar, "livenessProbe") != 0
    assert VALUE not in agent.logs() + agent.output()


# -- the webhook as a process -------------------------------------------------------------------


def https(url: str, ctx: ssl.SSLContext, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, context=ctx, timeout=10) as r:
        return json.loads(r.read())


def write_pair(cert: trustme.LeafCert, crt: Path, key: Path) -> None:
    """Replace both files by rename, as Kubernetes swaps a Secret volume's files."""
    for blob, path in ((cert.cert_chain_pems[0], crt), (cert.private_key_pem, key)):
        tmp = path.with_name(path.name + ".new")
        blob.write_to_path(str(tmp))
        os.chmod(tmp, 0o400)
        os.replace(tmp, path)


def test_webhook_process_serves_tls_and_follows_certificate_renewal(tmp_path: Path) -> None:
    """1. `python -m loader webhook` with a trustme certificate (settings from flags and
    LOADER_WEBHOOK_* variables, plus the variables Kubernetes service links add); 2. /healthz
    and one AdmissionReview over HTTPS, verified against the CA; the patch applies; 3. the
    certificate files replaced by one from another CA: new handshakes use it (the old CA no
    longer verifies); 4. SIGTERM stops it cleanly."""
    first, second = trustme.CA(), trustme.CA()
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_pair(first.issue_cert("localhost", "127.0.0.1"), crt, key)
    env = loader_env(
        LOADER_WEBHOOK_IMAGE=IMAGE,
        LOADER_WEBHOOK_STORE_URL=STORE,
        LOADER_WEBHOOK_PORT="tcp://10.96.0.12:443",
        LOADER_WEBHOOK_SERVICE_HOST="10.96.0.12",
        LOADER_WEBHOOK_SERVICE_PORT="443",
    )
    proc = spawn(
        [
            *LOADER, "webhook", "--listen", "127.0.0.1:0", "--tls-cert", str(crt),
            "--tls-key", str(key), "--tls-reload-interval", "0.1",
        ],
        tmp_path / "webhook.log",
        env,
    )  # fmt: skip
    try:
        url = wait_for_line(proc, r"listening on (https://\S+)")
        ctx1 = ssl.create_default_context()
        first.configure_trust(ctx1)
        assert https(f"{url}/healthz", ctx1) == {"status": "ok"}
        pod = make_pod(ANNOTATED)
        review = admission_review(pod)
        answer = https(f"{url}/mutate", ctx1, review)
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"]
        assert response["allowed"] is True
        result = patched(pod, response)
        assert result["spec"]["containers"][-1]["image"] == IMAGE
        assert env_of(result["spec"]["containers"][-1])["LOADER_STORE_URL"] == STORE

        write_pair(second.issue_cert("localhost", "127.0.0.1"), crt, key)
        ctx2 = ssl.create_default_context()
        second.configure_trust(ctx2)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert https(f"{url}/healthz", ctx2) == {"status": "ok"}
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, proc.logs()
                time.sleep(0.05)
        with pytest.raises(urllib.error.URLError) as refused:
            https(f"{url}/healthz", ctx1)
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    finally:
        code = proc.stop()
    assert code == 0, proc.logs()
    assert "Traceback" not in proc.logs()


def test_webhook_cli_refuses_bad_settings_with_exit_78() -> None:
    """Each refusal is one line naming the setting, before anything listens."""
    cases = [
        (["--image", IMAGE, "--store-url", STORE], "--tls-cert"),
        (["--insecure", "--store-url", STORE], "LOADER_WEBHOOK_IMAGE"),
        (["--insecure", "--image", IMAGE], "LOADER_WEBHOOK_STORE_URL"),
        (["--insecure", "--image", IMAGE, "--store-url", "ftp://x"], "store url"),
        (["--insecure", "--image", IMAGE, "--store-url", STORE, "--cpu-limit", "lots"], "quantity"),
        (["--insecure", "--image", IMAGE, "--store-url", STORE, "--token-secret", "A_B"], "name"),
        (
            ["--insecure", "--image", IMAGE, "--store-url", STORE, "--listen", "nowhere"],
            "HOST:PORT",
        ),
        (
            ["--insecure", "--image", IMAGE, "--store-url", STORE, "--client-label", "x"],
            "KEY=VALUE",
        ),
    ]
    for args, needle in cases:
        out = run_loader("webhook", *args, timeout=30)
        assert out.returncode == 78, (args, out.stderr)
        lines = out.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert needle in lines[0], (args, lines)
    assert b"webhook" in run_loader("--help").stderr + run_loader("--help").stdout
