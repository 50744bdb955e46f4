"""The webhook's environment injection and native sidecar: real AdmissionReviews to the real
aiohttp app; every patch is applied with ``jsonpatch`` and the patched pod validated (strict)
against the Kubernetes schemas of the versions it is for (kubernetes-validate). Then the
rewritten command itself is run: the frozen loader-run, a real agent, a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from loader.webhook.envinject import COPY_CONTAINER, RUNNER, RUNNER_DIR
from tests.integration.test_loader_run_frozen import (
    CANARY,
    loader_run,
    loopback_agent,
    run_frozen,
)
from tests.integration.test_webhook import (
    ANNOTATED,
    IMAGE,
    Post,
    admission_review,
    assert_hardened,
    by_name,
    make_pod,
    patched,
    post,
    settings,
)
from tests.procs import LiveStore, free_port

__all__ = ["loader_run", "post"]  # fixtures

# Every minor version kubernetes-validate has schemas for, from the oldest the chart supports.
ALL_VERSIONS = [f"1.{minor}.0" for minor in range(27, 38)]
NATIVE_VERSIONS = [v for v in ALL_VERSIONS if int(v.split(".")[1]) >= 29]

SPICE = {
    "name": "spice",
    "image": "spiceai/spiceai:1.11.5",
    "args": ["--http", "0.0.0.0:8090"],
    "resources": {},
    "imagePullPolicy": "IfNotPresent",
}
WORKER = {
    "name": "worker",
    "image": "busybox:1.36",
    "command": ["sh", "-c"],
    "args": ['echo "$CANARY"'],
    "resources": {},
    "imagePullPolicy": "IfNotPresent",
}
METRICS = {"name": "metrics", "image": "prom/statsd-exporter:v0.26.0", "resources": {}}
ENV_ANNOTATED = {
    **ANNOTATED,
    "loader.dev/inject-env": "spice, worker",
    "loader.dev/command.spice": '["/usr/local/bin/spiced"]',
    "loader.dev/env-watch": "spice",
    "loader.dev/env-mask": "worker",
}


def validate(pod: dict[str, Any], versions: list[str]) -> None:
    for version in versions:
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"Kubernetes {version}: {str(exc)[-1500:]}") from None


def env_pod(annotations: dict[str, str], *containers: dict[str, Any]) -> dict[str, Any]:
    """:func:`make_pod` with these containers, its ServiceAccount token source complete as the
    API server has it (the pod in is valid: checked)."""
    pod = make_pod(annotations, containers=[dict(c) for c in containers] or None)
    for volume in pod["spec"].get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            source["serviceAccountToken"] = {"path": "token", "expirationSeconds": 3607}
    validate(pod, ALL_VERSIONS)
    return pod


async def test_env_injection_rewrites_named_containers_only(post: Post) -> None:
    """1. spice (image entrypoint, its command from the annotation, args kept after it) and
    worker (command + args) run under loader-run with their own --watch / --mask; metrics is
    untouched but for the secrets mount; 2. loader-run-copy fills the memory volume before
    loader-render; 3. the patched pod is a valid Pod for Kubernetes 1.27 to 1.37."""
    pod = env_pod(ENV_ANNOTATED, SPICE, WORKER, METRICS)
    response = await post(admission_review(pod))
    assert response["allowed"] is True, response
    result = patched(pod, response)
    validate(result, ALL_VERSIONS)
    spec = result["spec"]

    copy, render = spec["initContainers"]
    assert (copy["name"], render["name"]) == (COPY_CONTAINER, "loader-render")
    assert copy["image"] == IMAGE
    assert copy["command"] == ["cp", "-R", "/opt/loader-run/.", f"{RUNNER_DIR}/"]
    assert copy["volumeMounts"] == [{"name": "loader-run", "mountPath": RUNNER_DIR}]
    assert_hardened(copy)
    volume = by_name(spec["volumes"], "loader-run")
    assert volume["emptyDir"]["medium"] == "Memory"

    spice, worker, metrics, agent = spec["containers"]
    agent_flags = ["--agent-url", "http://127.0.0.1:8701", "--timeout", "60s"]
    assert spice["command"] == [
        RUNNER, *agent_flags, "--watch", "--", "/usr/local/bin/spiced", "--http", "0.0.0.0:8090"
    ]  # fmt: skip
    assert worker["command"] == [RUNNER, *agent_flags, "--mask", "--", "sh", "-c", 'echo "$CANARY"']
    assert "args" not in spice and "args" not in worker
    runner_mount = {"name": "loader-run", "mountPath": RUNNER_DIR, "readOnly": True}
    for container in (spice, worker):
        assert runner_mount in container["volumeMounts"]
    assert metrics == {
        **METRICS,
        "volumeMounts": [{"name": "loader-secrets", "mountPath": "/secrets", "readOnly": True}],
    }
    assert agent["name"] == "loader-agent" and "restartPolicy" not in agent


async def test_env_injection_alone_brings_the_agent_and_a_command_without_args(
    post: Post,
) -> None:
    """``loader.dev/inject-env`` without ``loader.dev/inject``: the agent comes too; a
    container with a command and no args keeps no args key."""
    annotations = {"loader.dev/inject-env": "worker", "loader.dev/app": "7"}
    worker = {k: v for k, v in WORKER.items() if k != "args"}
    pod = env_pod(annotations, worker)
    result = patched(pod, await post(admission_review(pod)))
    validate(result, ALL_VERSIONS)
    container, agent = result["spec"]["containers"]
    assert container["command"][-3:] == ["--", "sh", "-c"]
    assert "args" not in container
    assert agent["name"] == "loader-agent"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {"loader.dev/inject-env": "spice"},
            "container spice has no command in the pod spec (it runs its image's entrypoint, "
            "which the webhook cannot read): set loader.dev/command.spice",
        ),
        ({"loader.dev/inject-env": "nope"}, "names 'nope', not a container of this pod"),
        (
            {"loader.dev/inject-env": "worker", "loader.dev/env-watch": "spice"},
            "loader.dev/env-watch names spice, not in loader.dev/inject-env",
        ),
        (
            {"loader.dev/inject-env": "spice", "loader.dev/command.spice": "spiced --http"},
            "loader.dev/command.spice must be a JSON array of strings",
        ),
        (
            {"loader.dev/inject-env": "worker", "loader.dev/command.worker": '["sh"]'},
            "container worker has a command and loader.dev/command.worker too: keep one",
        ),
    ],
)
async def test_env_injection_refuses_what_cannot_work(
    post: Post, annotations: dict[str, str], message: str
) -> None:
    pod = env_pod({**ANNOTATED, **annotations}, SPICE, WORKER)
    response = await post(admission_review(pod))
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    text = response["status"]["message"]
    assert text.startswith("loader.dev/inject-env: ") and message in text, text
    assert "\n" not in text


async def test_native_sidecar_is_an_always_restarting_init_container(post: Post) -> None:
    """native_sidecar: the agent is the last init container (after loader-run-copy) with
    restartPolicy Always, a startup probe on /readyz lasting the render timeout, and the usual
    probes; no loader-render; the app containers are only mounted and rewritten. Valid on
    Kubernetes 1.29 to 1.37."""
    conf = settings(native_sidecar=True, render_timeout="30s")
    pod = env_pod(ENV_ANNOTATED, SPICE, WORKER)
    result = patched(pod, await post(admission_review(pod), conf))
    validate(result, NATIVE_VERSIONS)
    spec = result["spec"]
    copy, agent = spec["initContainers"]
    assert copy["name"] == COPY_CONTAINER
    assert agent["name"] == "loader-agent"
    assert agent["restartPolicy"] == "Always"
    startup = agent["startupProbe"]
    assert "/readyz" in startup["exec"]["command"][-1]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 30
    assert "/healthz" in agent["livenessProbe"]["exec"]["command"][-1]
    assert_hardened(agent)
    assert [c["name"] for c in spec["containers"]] == ["spice", "worker"]
    assert spec["containers"][1]["command"][3:5] == ["--timeout", "30s"]
    # Without env injection: the agent alone.
    plain = env_pod(ANNOTATED)
    result = patched(plain, await post(admission_review(plain), conf))
    validate(result, NATIVE_VERSIONS)
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["loader-agent"]
    assert [c["name"] for c in result["spec"]["containers"]] == ["spice"]


async def test_the_rewritten_command_runs_against_a_real_agent(
    post: Post, tmp_path: Path, shm: Path, loader_run: Path
) -> None:
    """The worker's patched command, run as the pod would (the frozen loader-run where the
    volume puts it, no python3 on PATH): it gets the secret from a real agent on the pod's
    loopback, and --mask hides it in the output."""
    port = free_port()
    pod = env_pod(ENV_ANNOTATED, SPICE, WORKER)
    result = patched(pod, await post(admission_review(pod), settings(agent_port=port)))
    command = by_name(result["spec"]["containers"], "worker")["command"]
    assert command[0] == RUNNER
    store = LiveStore.start(tmp_path)
    store.put("CANARY", CANARY)
    agent = loopback_agent(tmp_path, shm, store, port)
    try:
        out = run_frozen(loader_run, tmp_path, *command[1:])
        unmasked = run_frozen(loader_run, tmp_path, *[a for a in command[1:] if a != "--mask"])
    finally:
        agent.stop()
        store.proc.stop()
    assert (out.returncode, out.stdout) == (0, "******\n"), out.stderr
    assert (unmasked.returncode, unmasked.stdout) == (0, CANARY + "\n"), unmasked.stderr
