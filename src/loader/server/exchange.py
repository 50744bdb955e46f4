"""``POST /oauth/token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
(RFC 7523 section 2.1): a workload's JWT in, a short-lived loader access token out, with the
grant of the trust policy it matches (:mod:`loader.store.workload`).

The access token lives the policy's ``ttl``, and never past the workload token's own ``exp``: a
pod deleted (its token no longer renewed) keeps no access beyond it. A ``scope`` may narrow the
policy's scopes. Every exchange and every refusal is audited (``issue_access_token``) with the
policy id as ``token_id``, the verified subject and, for a refusal, the reason code -- never the
token.
"""

from __future__ import annotations

import time
from dataclasses import replace

from aiohttp import web

from loader.errors import InvalidRequestError, NotFoundError
from loader.server.routing import Call, json_response
from loader.server.schemas import TokenRequestBody
from loader.store.jwt import Issued
from loader.store.models import AuditEvent, utcnow
from loader.store.workload import WorkloadRefused

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def narrowed(granted: frozenset[str], scope: str | None, grantor: str) -> frozenset[str]:
    """The scopes an access token gets: all ``granted``, or the asked-for subset of them."""
    if not scope:
        return granted
    wanted = frozenset(scope.split())
    if not wanted <= granted:
        raise InvalidRequestError(f"scope asks for more than the {grantor} grants")
    return wanted


def issued(
    call: Call[TokenRequestBody],
    token: Issued,
    token_id: str,
    app_id: int | None,
    subject: str | None = None,
) -> web.Response:
    """Audit an access token's issue (never the token) and answer with it."""
    call.state.audit.record(
        AuditEvent(
            at=utcnow(),
            action="issue_access_token",
            outcome="ok",
            token_id=token_id,
            app_id=app_id,
            client=call.client,
            subject=subject,
        )
    )
    return _token_response(token)


def _token_response(issued: Issued) -> web.Response:
    return json_response(
        {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        },
        headers=NO_STORE,
    )


def _event(call: Call[TokenRequestBody], outcome: str, exc: WorkloadRefused) -> AuditEvent:
    policy = exc.policy
    return AuditEvent(
        at=utcnow(),
        action="issue_access_token",
        outcome=outcome,
        token_id=policy.id if policy is not None else None,
        app_id=policy.app_id if policy is not None else None,
        client=call.client,
        subject=exc.subject,
        reason=exc.reason,
    )


async def exchange_workload_token(call: Call[TokenRequestBody]) -> web.StreamResponse:
    body = call.body
    authority, verifier = call.state.jwt, call.state.workload
    if authority is None or verifier is None:
        raise NotFoundError("workload identity is not enabled on this store")
    try:
        match = await verifier.verify(body.assertion or "")  # none: refused as malformed
    except WorkloadRefused as exc:
        call.state.audit.refused(_event(call, "unauthorized", exc))
        raise
    policy = match.policy
    scopes = narrowed(policy.scopes, body.scope, "trust policy")
    ttl = min(policy.ttl, int(match.expires_at - time.time()))
    if ttl < 1:  # expired within the leeway: nothing left to grant
        late = WorkloadRefused("expired", policy, match.subject)
        call.state.audit.refused(_event(call, "unauthorized", late))
        raise late
    token = authority.issue_workload(replace(policy, scopes=scopes), match.subject, ttl)
    return issued(call, token, policy.id, policy.app_id, match.subject)
