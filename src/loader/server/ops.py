"""The operator's routes: readiness (``/v1/ready``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from loader.errors import LoaderError
from loader.server.metrics import CONTENT_TYPE
from loader.server.routing import Call, json_response

NO_STORE = {"Cache-Control": "no-store"}
RETRY_AFTER = 5
FLEET_MAX_AGE = 5.0


async def ready(call: Call[Any]) -> web.StreamResponse:
    """200 when the database answers, the master key opens a data key and the data file is the
    one opened; else 503 with the first failing check's reason code."""
    readiness = call.state.readiness
    if readiness is None:
        return json_response({"status": "ready", "checks": {}}, headers=NO_STORE)
    report = await readiness.report()
    checks = {c.name: c.code for c in report.checks}
    failure = report.failure
    if failure is None:
        return json_response({"status": "ready", "checks": checks}, headers=NO_STORE)
    return json_response(
        {
            "status": "unavailable",
            "error": failure.message,
            "code": failure.code,
            "retry_after": RETRY_AFTER,
            "checks": checks,
        },
        status=503,
        headers={**NO_STORE, "Retry-After": str(RETRY_AFTER)},
    )


async def metrics(call: Call[Any]) -> web.StreamResponse:
    registry = call.state.metrics
    consumers = call.state.consumers
    if consumers is not None:  # the fleet's gauges: read from the database, at most every 5 s
        with contextlib.suppress(LoaderError):  # (the database away: the last figures, and
            await consumers.live(FLEET_MAX_AGE)  # the metrics that say it is away)
    body = registry.render() if registry is not None else b""
    return web.Response(body=body, headers={**NO_STORE, "Content-Type": CONTENT_TYPE})
