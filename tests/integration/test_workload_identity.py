"""Workload identity at the store: a real local issuer (keys generated here, JWKS served over
HTTP by an aiohttp server) and the real store, on SQLite and PostgreSQL. A pod token that
matches a trust policy gets exactly the policy's access; every kind of bad token is refused
with its reason code; rotation at the issuer is followed; all of it is audited without the
token."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import jwt
import pytest

from loader.store.models import TrustPolicy, utcnow
from loader.store.trust import K8S_NAMESPACE, K8S_SERVICE_ACCOUNT, make_policy
from loader.workload import JWT_BEARER
from tests.issuer import AUDIENCE, ISSUER, Issuer, SigningKey, pod_claims
from tests.store_harness import Store

CANARY = "canary-workload-5e1d"
MakeStore = Callable[..., AbstractAsyncContextManager[Store]]


@pytest.fixture
async def issuer(aiohttp_server: Any) -> Issuer:
    issuer = Issuer("RS256", "ES256")
    server = await aiohttp_server(issuer.app())
    issuer.url = str(server.make_url("/openid/v1/jwks"))
    return issuer


async def trust(store: Store, issuer: Issuer, **grant: Any) -> TrustPolicy:
    options: dict[str, Any] = {
        "conditions": {K8S_NAMESPACE: "shop", K8S_SERVICE_ACCOUNT: "api"},
        "scopes": frozenset({"secrets:reveal"}),
        "app_id": None,
        "environments": None,
        "ttl": 900,
        **grant,
    }
    policy = make_policy(
        issuer=ISSUER, audience=AUDIENCE, now=utcnow(), jwks_url=issuer.url, **options
    )
    await store.state.service.repo.create_trust_policy(policy)
    return policy


async def exchange(store: Store, assertion: str, **extra: str) -> tuple[int, dict[str, Any]]:
    resp = await store.client.post(
        "/oauth/token", data={"grant_type": JWT_BEARER, "assertion": assertion, **extra}
    )
    return resp.status, await resp.json()


async def audit_rows(store: Store) -> list[tuple[Any, ...]]:
    await store.state.audit.flush()
    return await store.sql(
        "SELECT action, outcome, token_id, subject, reason, app_id FROM audit_events ORDER BY id"
    )


async def test_a_matching_pod_token_gets_exactly_the_policys_access(
    store: Store, issuer: Issuer
) -> None:
    """1. a policy for shop/api: reveal in app shop, environment prod only; 2. the pod's token
    (RS256, then ES256) is exchanged for an access token that lives no longer than the pod token;
    3. it reveals prod, and nothing else: not default, not another app, no writes; 4. a narrower
    scope may be asked for, a wider one not; 5. the audit has the policy id and the subject on
    the exchange and on the reveal, and the tokens nowhere."""
    shop, other = await store.app("shop"), await store.app("other")
    await store.env(shop, "prod")
    await store.put(shop, "DB_PASSWORD", CANARY, env="prod")
    await store.put(shop, "OTHER", "x")
    policy = await trust(
        store,
        issuer,
        app_id=shop,
        environments=("prod",),
        scopes=frozenset({"secrets:reveal", "secrets:read"}),
    )
    pod_token = issuer.sign(pod_claims(exp=int(time.time()) + 300))
    status, body = await exchange(store, pod_token)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "secrets:read secrets:reveal"
    assert 290 <= body["expires_in"] <= 300  # capped at the pod token's exp, not the policy's 900
    access = body["access_token"]
    auth = store.auth(access)
    prod = await store.client.get(
        f"/v1/apps/{shop}/environments/prod/rendered?mode=full", headers=auth
    )
    assert prod.status == 200 and (await prod.json())["secrets"] == {"DB_PASSWORD": CANARY}
    for path in (
        f"/v1/apps/{shop}/environments/default/rendered?mode=full",
        f"/v1/apps/{other}/environments/default/rendered?mode=full",
    ):
        assert (await store.client.get(path, headers=auth)).status == 403, path
    write = await store.client.post(
        f"/v1/apps/{shop}/environments/prod/secrets", json={"name": "X", "value": "y"}, headers=auth
    )
    assert write.status == 403
    ec_token = issuer.sign(pod_claims(), key=issuer.keys[1])
    assert (await exchange(store, ec_token))[0] == 200
    status, narrow = await exchange(store, pod_token, scope="secrets:read")
    assert (status, narrow["scope"]) == (200, "secrets:read")
    reveal_prod = f"/v1/apps/{shop}/environments/prod/rendered?mode=full"
    narrow_auth = store.auth(narrow["access_token"])
    assert (await store.client.get(reveal_prod, headers=narrow_auth)).status == 403
    assert (await exchange(store, pod_token, scope="secrets:write"))[0] == 400

    rows = await audit_rows(store)
    exchanges = [r for r in rows if r[0] == "issue_access_token" and r[1] == "ok"]
    assert len(exchanges) == 3
    assert {r[2:4] for r in exchanges} == {(policy.id, "system:serviceaccount:shop:api")}
    reveal = [r for r in rows if r[0] == "reveal"]
    assert reveal and reveal[0][2:4] == (policy.id, "system:serviceaccount:shop:api")
    dump = json.dumps([list(map(str, r)) for r in await store.sql("SELECT * FROM audit_events")])
    assert pod_token not in dump and access not in dump and CANARY not in dump


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["kubernetes.io"]["namespace"] = "shop"  # signed for namespace "intruder"
    claims["sub"] = "system:serviceaccount:shop:api"
    return f"{head}.{_b64(claims)}.{sig}"


BAD_TOKENS: list[tuple[str, Callable[[Issuer], str], str]] = [
    ("wrong audience", lambda i: i.sign(pod_claims(aud=["someone-else"])), "wrong_audience"),
    ("wrong namespace", lambda i: i.sign(pod_claims(namespace="intruder")), "no_matching_policy"),
    ("wrong account", lambda i: i.sign(pod_claims(service_account="db")), "no_matching_policy"),
    (
        "expired",
        lambda i: i.sign(pod_claims(iat=int(time.time()) - 700, exp=int(time.time()) - 60)),
        "expired",
    ),
    ("future nbf", lambda i: i.sign(pod_claims(nbf=int(time.time()) + 600)), "not_yet_valid"),
    (
        "alg none",
        lambda i: f"{_b64({'alg': 'none', 'kid': i.key.kid})}.{_b64(pod_claims())}.",
        "unsupported_algorithm",
    ),
    (
        "alg HS256",
        lambda i: jwt.encode(
            pod_claims(), "a-shared-secret-of-32-bytes-long!", "HS256", {"kid": i.key.kid}
        ),
        "unsupported_algorithm",
    ),
    ("unknown kid", lambda i: i.sign(key=SigningKey()), "unknown_key"),
    ("other issuer", lambda i: i.sign(pod_claims(iss="https://elsewhere")), "unknown_issuer"),
    (
        "tampered claim",
        lambda i: _tampered(i.sign(pod_claims(namespace="intruder"))),
        "bad_signature",
    ),
    (
        "RS256 header on an EC key",
        lambda i: i.sign(key=i.keys[0], headers={"kid": i.keys[1].kid}),
        "unknown_key",
    ),
    (
        "no exp",
        lambda i: i.sign({k: v for k, v in pod_claims().items() if k != "exp"}),
        "missing_claim",
    ),
    ("not a JWT", lambda i: "not-a-jwt", "malformed"),
]


async def test_bad_workload_tokens_are_refused_with_a_reason(
    make_store: MakeStore, issuer: Issuer
) -> None:
    """Each bad token: 401, its reason code, no access token, nothing of the token in the
    answer; each refusal audited (policy id where one policy is in question, never the token)."""
    async with make_store(jwt_leeway=5) as store:
        app = await store.app("shop")
        policy = await trust(store, issuer, app_id=app)
        for name, make, reason in BAD_TOKENS:
            try:
                token = make(issuer)
            except (jwt.PyJWTError, ValueError, TypeError):
                pytest.fail(f"could not build the {name} token")
            status, body = await exchange(store, token)
            assert (status, body.get("reason")) == (401, reason), name
            assert "access_token" not in body and body["code"] == "unauthorized"
            assert token[:40] not in json.dumps(body)
        refusals = [r for r in await audit_rows(store) if r[1] == "unauthorized"]
        reasons = {r[4] for r in refusals}
        assert reasons == {reason for _, _, reason in BAD_TOKENS}
        assert all(r[0] == "issue_access_token" for r in refusals)
        mismatch = [r for r in refusals if r[4] == "no_matching_policy"]
        assert {r[2:4] for r in mismatch} == {
            (policy.id, "system:serviceaccount:intruder:api"),
            (policy.id, "system:serviceaccount:shop:db"),
        }
        assert all(r[3] is None for r in refusals if r[4] in ("bad_signature", "malformed"))


async def test_a_deleted_policy_refuses_new_exchanges_and_its_access_tokens(
    store: Store, issuer: Issuer
) -> None:
    """1. exchange and read; 2. delete the policy; 3. the access token is refused at once, a
    long-poll held with it is woken with 401; 4. the pod token no longer exchanges."""
    app = await store.app("shop")
    await store.put(app, "A", "1")
    policy = await trust(store, issuer, app_id=app)
    pod_token = issuer.sign()
    status, body = await exchange(store, pod_token)
    assert status == 200
    auth = store.auth(body["access_token"])
    rendered = f"/v1/apps/{app}/environments/default/rendered?mode=full"
    first = await store.client.get(rendered, headers=auth)
    assert first.status == 200
    etag = first.headers["ETag"]
    held = asyncio.ensure_future(
        store.client.get(f"{rendered}&wait=30", headers={**auth, "If-None-Match": etag})
    )
    await asyncio.sleep(0.3)
    assert not held.done()
    assert await store.state.service.repo.delete_trust_policy(policy.id, utcnow())
    woken = await asyncio.wait_for(held, 10)
    assert woken.status == 401
    assert (await store.client.get(rendered, headers=auth)).status == 401
    assert (await exchange(store, pod_token))[1]["reason"] == "unknown_issuer"
    assert not await store.state.service.repo.delete_trust_policy(policy.id, utcnow())


async def test_two_matching_policies_are_ambiguous(store: Store, issuer: Issuer) -> None:
    await trust(store, issuer)
    await trust(store, issuer, conditions={K8S_NAMESPACE: "sh*"})
    status, body = await exchange(store, issuer.sign())
    assert (status, body["reason"]) == (401, "ambiguous_policy")


async def test_key_rotation_at_the_issuer_is_followed(
    make_store: MakeStore, issuer: Issuer
) -> None:
    """1. the keys are fetched once for many exchanges; 2. tokens with made-up kids cost at most
    one refetch per interval; 3. the issuer rotates: the new key's tokens are accepted after the
    interval, the old key's refused."""
    async with make_store(jwks_refetch_interval=1, jwks_max_age=3600) as store:
        await trust(store, issuer)
        old = issuer.key
        for _ in range(5):
            assert (await exchange(store, issuer.sign()))[0] == 200
        assert issuer.fetches == 1
        for _ in range(10):
            assert (await exchange(store, issuer.sign(key=SigningKey())))[1][
                "reason"
            ] == "unknown_key"
        assert issuer.fetches <= 2
        await asyncio.sleep(1.1)
        new = issuer.rotate()
        status, _ = await exchange(store, issuer.sign(key=new))
        assert status == 200
        fetched = issuer.fetches
        assert (await exchange(store, issuer.sign(key=old)))[1]["reason"] == "unknown_key"
        assert issuer.fetches == fetched  # within the interval: not fetched again
        assert (await exchange(store, issuer.sign(key=new)))[0] == 200


async def test_client_credentials_still_work_beside_jwt_bearer(store: Store) -> None:
    """The two grants share the endpoint; a grant missing its credential is refused (401)."""
    client_id, secret = await store.oauth_client("secrets:read")
    assert (await store.access_token(client_id, secret))[0]
    resp = await store.client.post(
        "/oauth/token", json={"grant_type": JWT_BEARER, "client_id": client_id}
    )
    assert (resp.status, (await resp.json())["reason"]) == (401, "malformed")
    resp = await store.client.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert resp.status == 401
    resp = await store.client.post("/oauth/token", json={"grant_type": "password"})
    assert resp.status == 400
