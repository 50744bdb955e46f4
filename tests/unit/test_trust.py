"""Trust policies, the pure part: claim paths, exact and glob conditions, the checks on a new
policy. One table per function."""

from __future__ import annotations

from typing import Any

import pytest

from loader.errors import InvalidRequestError
from loader.store.models import utcnow
from loader.store.trust import (
    K8S_NAMESPACE,
    K8S_SERVICE_ACCOUNT,
    check_url,
    claim,
    conditions_hold,
    has_audience,
    make_policy,
    parse_condition,
    subject,
)

POD: dict[str, Any] = {
    "sub": "system:serviceaccount:shop:api",
    "aud": ["loader-store", "other"],
    "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "api"}},
    "repository": "acme/shop",
    "ref": "refs/heads/main",
    "run_attempt": 1,
    "a.b": {"c": "dotted-key"},
    "a": {"b": {"c": "nested"}},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("sub", "system:serviceaccount:shop:api"),
        (K8S_NAMESPACE, "shop"),
        (K8S_SERVICE_ACCOUNT, "api"),
        ("a.b.c", "dotted-key"),  # the longest key that exists wins
        ("repository", "acme/shop"),
        ("kubernetes.io.pod.name", None),
        ("sub.x", None),
        ("nope", None),
    ],
)
def test_claim_paths(path: str, expected: object) -> None:
    found = claim(POD, path)
    assert (found if isinstance(found, str) else None) == expected


@pytest.mark.parametrize(
    ("conditions", "holds"),
    [
        ({K8S_NAMESPACE: "shop", K8S_SERVICE_ACCOUNT: "api"}, True),
        ({K8S_NAMESPACE: "shop", K8S_SERVICE_ACCOUNT: "db"}, False),
        ({K8S_NAMESPACE: "sh*"}, True),
        ({K8S_NAMESPACE: "sho?"}, True),
        ({K8S_NAMESPACE: "[st]hop"}, True),
        ({K8S_NAMESPACE: "Shop"}, False),  # case matters
        ({K8S_NAMESPACE: "shop-*"}, False),
        ({"repository": "acme/*", "ref": "refs/heads/main"}, True),
        ({"repository": "acme/*", "ref": "refs/tags/*"}, False),
        ({"run_attempt": "1"}, False),  # only string claims match
        ({"missing": "*"}, False),  # a glob does not conjure a missing claim
        ({"kubernetes.io": "*"}, False),  # nor match an object
    ],
)
def test_conditions(conditions: dict[str, str], holds: bool) -> None:
    assert conditions_hold(sorted(conditions.items()), POD) is holds


@pytest.mark.parametrize(
    ("aud", "audience", "expected"),
    [
        ("loader-store", "loader-store", True),
        (["x", "loader-store"], "loader-store", True),
        (["x"], "loader-store", False),
        ("loader-store-2", "loader-store", False),
        (None, "loader-store", False),
        ({"loader-store": 1}, "loader-store", False),
    ],
)
def test_audience(aud: object, audience: str, expected: bool) -> None:
    assert has_audience({"aud": aud}, audience) is expected


def test_subject_is_bounded_and_never_absent() -> None:
    assert subject(POD) == "system:serviceaccount:shop:api"
    assert subject({"sub": "x" * 1000}) == "x" * 256
    assert subject({}) == "(no sub)"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("repository=acme/shop", ("repository", "acme/shop")),
        ("ref=refs/heads/*", ("ref", "refs/heads/*")),
        (" a.b =x=y", ("a.b", "x=y")),
        ("novalue=", None),
        ("=x", None),
        ("plain", None),
    ],
)
def test_parse_condition(text: str, parsed: tuple[str, str] | None) -> None:
    if parsed is None:
        with pytest.raises(InvalidRequestError):
            parse_condition(text)
    else:
        assert parse_condition(text) == parsed


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://token.actions.githubusercontent.com/.well-known/jwks", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://localhost/jwks", True),
        ("http://[::1]:9/jwks", True),
        ("http://issuer.example/jwks", False),
        ("http://10.0.0.1/jwks", False),
        ("file:///etc/jwks.json", False),
        ("https:///jwks", False),
    ],
)
def test_jwks_urls_are_https_or_loopback(url: str, ok: bool) -> None:
    if ok:
        assert check_url(url, "--jwks-url") == url
    else:
        with pytest.raises(InvalidRequestError, match="--jwks-url"):
            check_url(url, "--jwks-url")


GOOD: dict[str, Any] = {
    "issuer": "https://kubernetes.default.svc",
    "audience": "loader-store",
    "conditions": {K8S_NAMESPACE: "shop"},
    "scopes": frozenset({"secrets:reveal"}),
    "app_id": 1,
    "environments": None,
    "ttl": 900,
    "jwks_file": "/etc/loader/jwks.json",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"conditions": {}}, "at least one claim condition"),
        ({"conditions": {"sub": "*", "ref": "**"}}, "at least one claim condition"),
        ({"jwks_file": None}, "--jwks-url URL or --jwks-file"),
        ({"jwks_url": "https://x/jwks"}, "--jwks-url URL or --jwks-file"),
        ({"jwks_file": None, "jwks_url": "http://x/jwks"}, "https"),
        ({"audience": ""}, "--audience"),
        ({"issuer": ""}, "--issuer"),
        ({"ttl": 30}, "--ttl"),
        ({"ttl": 2 * 86400}, "--ttl"),
    ],
)
def test_make_policy_refuses_what_cannot_be_meant(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        make_policy(now=utcnow(), **{**GOOD, **change})


def test_make_policy() -> None:
    policy = make_policy(now=utcnow(), **{**GOOD, "conditions": {"b": "2", "a": "1"}})
    assert policy.id.startswith("tp_") and len(policy.id) == 15
    assert policy.conditions == (("a", "1"), ("b", "2"))
