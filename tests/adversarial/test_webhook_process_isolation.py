"""The webhook does not inject the agent (and its token) into a pod whose other processes could
read it through /proc: hostPID always, shareProcessNamespace unless the pod opts in, and even
then not next to a container that may ptrace."""

from __future__ import annotations

from typing import Any

import pytest

from loader.webhook.server import create_app
from tests.integration.test_webhook import ANNOTATED, admission_review, make_pod, settings

SHARED_PROCESSES = "loader.dev/allow-shared-process-namespace"  # the documented opt-in


async def answer(aiohttp_client: Any, pod: dict[str, Any]) -> dict[str, Any]:
    client = await aiohttp_client(create_app(settings()))
    resp = await client.post("/mutate", json=admission_review(pod))
    assert resp.status == 200
    result: dict[str, Any] = (await resp.json())["response"]
    return result


def pod_with(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = make_pod({**ANNOTATED, **(annotations or {})})
    pod["spec"].update(spec)
    return pod


@pytest.mark.parametrize(
    ("spec", "annotations", "reason"),
    [
        ({"hostPID": True}, {}, "hostPID"),
        ({"hostPID": True}, {SHARED_PROCESSES: "true"}, "hostPID"),  # no opt-in for the node
        ({"shareProcessNamespace": True}, {}, "shareProcessNamespace"),
        ({"shareProcessNamespace": True}, {SHARED_PROCESSES: "yes"}, "shareProcessNamespace"),
    ],
)
async def test_pods_sharing_processes_are_denied(
    aiohttp_client: Any, spec: dict[str, Any], annotations: dict[str, str], reason: str
) -> None:
    response = await answer(aiohttp_client, pod_with(spec, annotations))
    assert response["allowed"] is False
    assert "patch" not in response
    assert reason in response["status"]["message"]


@pytest.mark.parametrize(
    "security",
    [
        {"privileged": True},
        {"capabilities": {"add": ["SYS_PTRACE"]}},
        {"capabilities": {"add": ["CAP_SYS_PTRACE"]}},
        {"capabilities": {"add": ["ALL"]}},
    ],
)
async def test_opt_in_is_refused_next_to_a_container_that_may_ptrace(
    aiohttp_client: Any, security: dict[str, Any]
) -> None:
    """The opt-in relies on the agent being non-dumpable, which CAP_SYS_PTRACE overrides."""
    pod = pod_with({"shareProcessNamespace": True}, {SHARED_PROCESSES: "true"})
    pod["spec"]["containers"][0]["securityContext"] = security
    response = await answer(aiohttp_client, pod)
    assert response["allowed"] is False
    assert "SYS_PTRACE" in response["status"]["message"]


async def test_explicit_opt_in_injects(aiohttp_client: Any) -> None:
    pod = pod_with({"shareProcessNamespace": True}, {SHARED_PROCESSES: "true"})
    response = await answer(aiohttp_client, pod)
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    plain = await answer(aiohttp_client, pod_with({"shareProcessNamespace": False}))
    assert plain["allowed"] is True and plain["patchType"] == "JSONPatch"
