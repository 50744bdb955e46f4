"""The fleet's routes: who consumes an environment (``.../consumers``), its restart budget
(``.../rollout``) and the restart slots runners take and give back (``.../restarts``).

Consumers identify themselves with the ``X-Loader-Consumer`` header (:mod:`loader.consumer`) on
the requests they make anyway; :func:`note_report` records it for the runtime read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loader import consumer
from loader.errors import InvalidRequestError, ServiceUnavailableError
from loader.server.routing import Call, Param, Route, json_response
from loader.server.schemas import RestartBody, RolloutPolicyBody
from loader.store.consumers import Consumers
from loader.store.fleet import Consumer, parse_policy, rollout, slots, state
from loader.store.models import Environment, iso

NO_STORE = {"Cache-Control": "no-store"}
_ENV = "/v1/apps/{appId}/environments/{env}"
_REPORT_DOC = (
    "Who asks: id=...;kind=agent|runner|render;host=...;version=...;rendered=N;running=N;"
    "health=starting|healthy|failed|waiting;failed=N;seq=N"
)
_REPORT_SCHEMA = {"type": "string", "maxLength": consumer.MAX_HEADER, "pattern": consumer.PATTERN}
REPORT_PARAM = Param(consumer.HEADER, _REPORT_SCHEMA, _REPORT_DOC, "header")
_RUNNER_REPORT = Param(
    consumer.HEADER,
    {**_REPORT_SCHEMA, "pattern": consumer.PATTERN.replace("(agent|runner|render)", "runner")},
    _REPORT_DOC,
    "header",
    required=True,
)


def report(call: Call[Any], *, required: bool = False) -> consumer.Report | None:
    raw = call.request.headers.get(consumer.HEADER)
    if raw is None:
        if required:
            raise InvalidRequestError(f"the {consumer.HEADER} header is required")
        return None
    try:
        return consumer.parse(raw)
    except consumer.ReportError as exc:
        raise InvalidRequestError(f"{consumer.HEADER}: {exc}") from None


def _consumers(call: Call[Any]) -> Consumers:
    consumers = call.state.consumers
    if consumers is None:
        raise ServiceUnavailableError("this store keeps no consumer reports")
    return consumers


def note_report(call: Call[Any], env: Environment) -> None:
    """The runtime read: note its consumer's report (if it sent one)."""
    found = report(call)
    if found is not None and call.state.consumers is not None:
        call.state.consumers.seen(env, found)


def consumer_json(c: Consumer, newest: int) -> dict[str, Any]:
    r = c.report
    return {
        "id": r.id,
        "kind": r.kind,
        "host": r.host,
        "version": r.version,
        "rendered_revision": r.rendered,
        "running_revision": r.running,
        "failed_revision": r.failed,
        "health": r.health,
        "state": state(c, newest),
        "last_seen": iso(c.last_seen),
    }


async def _rollout_json(
    consumers: Consumers, env: Environment, members: list[Consumer]
) -> dict[str, Any]:
    policy = await consumers.policy(env)
    runners = sum(1 for c in members if c.report.kind == "runner")
    summary = rollout(members, env.revision)
    return {
        "max_unavailable": policy,
        "slots": slots(policy, runners),
        "in_use": len(await consumers.slots(env)),
        "counts": summary.counts,
        "lag": summary.lag,
        "done": summary.done,
        "paused": summary.paused,
    }


async def list_consumers(call: Call[Any]) -> web.StreamResponse:
    consumers = _consumers(call)
    env = await call.state.service.environment(call.app_id, call.env_name)
    members = await consumers.of(env)
    body = {
        "environment": env.name,
        "revision": env.revision,
        "consumers": [consumer_json(c, env.revision) for c in members],
        "rollout": await _rollout_json(consumers, env, members),
    }
    return json_response(body, headers=NO_STORE)


async def get_rollout(call: Call[Any]) -> web.StreamResponse:
    consumers = _consumers(call)
    env = await call.state.service.environment(call.app_id, call.env_name)
    members = await consumers.of(env)
    return json_response(await _rollout_json(consumers, env, members), headers=NO_STORE)


async def set_rollout(call: Call[RolloutPolicyBody]) -> web.StreamResponse:
    consumers = _consumers(call)
    raw = call.body.max_unavailable
    try:
        policy = None if raw is None else parse_policy(str(raw))
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    env = await call.state.service.environment(call.app_id, call.env_name)
    await consumers.set_policy(env, policy)
    call.state.audit.record(call.event("set_rollout"))
    members = await consumers.of(env)
    return json_response(await _rollout_json(consumers, env, members), headers=NO_STORE)


def _runner(call: Call[Any]) -> consumer.Report:
    found = report(call, required=True)
    assert found is not None
    if found.kind != "runner":
        raise InvalidRequestError("restart slots are for runners (kind=runner)")
    return found


async def acquire_restart(call: Call[RestartBody]) -> web.StreamResponse:
    consumers = _consumers(call)
    runner = _runner(call)
    env = await call.state.service.environment(call.app_id, call.env_name)
    grant = await consumers.acquire(env, runner, call.body.revision)
    body = {
        "granted": grant.granted,
        "reason": grant.reason,
        "slots": grant.slots,
        "in_use": grant.in_use,
        "lease_seconds": consumers.lease,
    }
    return json_response(body, headers=NO_STORE)


async def release_restart(call: Call[Any]) -> web.StreamResponse:
    consumers = _consumers(call)
    runner = _runner(call)
    env = await call.state.service.environment(call.app_id, call.env_name)
    released = await consumers.release(env, runner)
    return json_response({"released": released}, headers=NO_STORE)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        _ENV + "/consumers",
        "listConsumers",
        "Who consumes the environment: revisions rendered and running, last seen, state",
        list_consumers,
        "apps:read",
        tag="Environments",
        response="ConsumerList",
        errors=(404,),
        action="list_consumers",
        description="Live consumers (agents, runners, render --once) as they last reported on "
        "their own requests (X-Loader-Consumer); one not seen for the store's --consumer-ttl "
        "is left out. With PostgreSQL every replica lists the whole fleet.",
    ),
    Route(
        "GET",
        _ENV + "/rollout",
        "getRollout",
        "The environment's restart budget and how its rollout stands",
        get_rollout,
        "apps:read",
        tag="Environments",
        response="Rollout",
        errors=(404,),
        action="get_rollout",
    ),
    Route(
        "PUT",
        _ENV + "/rollout",
        "setRollout",
        "Set the restart budget: how many runners may restart at once",
        set_rollout,
        "apps:write",
        tag="Environments",
        body=RolloutPolicyBody,
        response="Rollout",
        errors=(404,),
        action="set_rollout",
    ),
    Route(
        "POST",
        _ENV + "/restarts",
        "acquireRestartSlot",
        "A runner asks for a restart slot (or renews its lease)",
        acquire_restart,
        "secrets:reveal",
        tag="Environments",
        body=RestartBody,
        response="RestartGrant",
        errors=(404,),
        params=(_RUNNER_REPORT,),
        action="acquire_restart",
        description="granted: restart now and release the slot once the new child is healthy "
        "(the lease ends it otherwise). Not granted: every slot is taken (budget) or a runner "
        "failed at the newest revision (paused); ask again later.",
    ),
    Route(
        "DELETE",
        _ENV + "/restarts",
        "releaseRestartSlot",
        "A runner gives its restart slot back, reporting its child's health",
        release_restart,
        "secrets:reveal",
        tag="Environments",
        response="RestartRelease",
        errors=(404,),
        params=(_RUNNER_REPORT,),
        action="release_restart",
    ),
)
