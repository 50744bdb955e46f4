"""Trust policies, the pure part: what a policy says and whether a workload's claims match it.

A condition names a claim by its path -- dots walk into objects, and a key that itself holds
dots (``kubernetes.io``) is found whole first -- and gives the value it must have: exact, or a
glob (``*``, ``?``, ``[...]``, :func:`fnmatch.fnmatchcase`). Only string claims match. A policy
must have at least one condition that does not match everything: an issuer such as GitHub signs
tokens for every repository on it, so "any token of this issuer" is never what is meant.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from loader.errors import InvalidRequestError
from loader.store.models import TrustPolicy

TRUST_PREFIX = "tp_"
"""Trust policy ids read ``tp_<12 hex>``; an access token issued under one names it as ``sub``."""

# The claims of a Kubernetes service-account token (``kubernetes.io`` is one key).
K8S_NAMESPACE = "kubernetes.io.namespace"
K8S_SERVICE_ACCOUNT = "kubernetes.io.serviceaccount.name"

MAX_TTL = 24 * 3600
MAX_CLAIM_NAME = 200
MAX_PATTERN = 500
_GLOB = frozenset("*?[")
_MISSING = object()


def new_policy_id() -> str:
    return TRUST_PREFIX + secrets.token_hex(6)


def claim(claims: Mapping[str, object], path: str) -> object:
    """The claim at ``path`` (a dotted path; the longest key that exists wins at each level),
    or ``_MISSING``."""
    parts = path.split(".")
    node: object = claims
    while parts:
        if not isinstance(node, Mapping):
            return _MISSING
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            if key in node:
                node, parts = node[key], parts[cut:]
                break
        else:
            return _MISSING
    return node


def matches(pattern: str, value: object) -> bool:
    if not isinstance(value, str):
        return False
    if _GLOB.isdisjoint(pattern):
        return value == pattern
    return fnmatch.fnmatchcase(value, pattern)


def conditions_hold(conditions: Iterable[tuple[str, str]], claims: Mapping[str, object]) -> bool:
    return all(matches(pattern, claim(claims, path)) for path, pattern in conditions)


def has_audience(claims: Mapping[str, object], audience: str) -> bool:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud


def subject(claims: Mapping[str, object]) -> str:
    """The workload's subject as the audit shows it (``system:serviceaccount:NS:SA``,
    ``repo:ORG/REPO:ref:refs/heads/main``), bounded."""
    sub = claims.get("sub")
    return sub[:256] if isinstance(sub, str) else "(no sub)"


# -- building a policy (the CLI) ---------------------------------------------------------------


def parse_condition(text: str) -> tuple[str, str]:
    """``CLAIM=PATTERN`` -> ``(claim, pattern)``."""
    name, eq, pattern = text.partition("=")
    name = name.strip()
    if not eq or not name or not pattern:
        raise InvalidRequestError(f"--claim {text!r}: expected CLAIM=VALUE (a glob may use *, ?)")
    if len(name) > MAX_CLAIM_NAME or len(pattern) > MAX_PATTERN:
        raise InvalidRequestError("--claim: the claim name or its value is too long")
    return name, pattern


def check_conditions(conditions: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if not any(set(p) - {"*"} for p in conditions.values()):
        raise InvalidRequestError(
            "a trust policy needs at least one claim condition that does not match everything "
            "(e.g. --k8s-namespace and --k8s-service-account, or --claim repository=ORG/REPO)"
        )
    return tuple(sorted(conditions.items()))


def check_url(url: str, what: str) -> str:
    """An issuer or JWKS URL: https, or http to a loopback address only (tests, a local
    issuer): keys fetched in the clear could be swapped on the way."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise InvalidRequestError(f"{what} must be an https:// URL (http only to a loopback address)")


def make_policy(
    *,
    issuer: str,
    audience: str,
    conditions: Mapping[str, str],
    scopes: frozenset[str],
    app_id: int | None,
    environments: tuple[str, ...] | None,
    ttl: int,
    now: datetime,
    jwks_url: str | None = None,
    jwks_file: str | None = None,
    description: str | None = None,
) -> TrustPolicy:
    """A new policy, checked: every bad input is one clear line."""
    if not issuer or len(issuer) > 1000:
        raise InvalidRequestError("--issuer is required (the iss its tokens carry)")
    if (jwks_url is None) == (jwks_file is None):
        raise InvalidRequestError("give the issuer's keys: --jwks-url URL or --jwks-file FILE")
    if jwks_url is not None:
        check_url(jwks_url, "--jwks-url")
    if not audience or len(audience) > 1000:
        raise InvalidRequestError("--audience is required (the aud its tokens must carry)")
    if not 60 <= ttl <= MAX_TTL:
        raise InvalidRequestError("--ttl must be between 1m and 24h")
    return TrustPolicy(
        id=new_policy_id(),
        issuer=issuer,
        audience=audience,
        conditions=check_conditions(conditions),
        scopes=scopes,
        app_id=app_id,
        environments=environments,
        ttl=ttl,
        created_at=now,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        description=description,
    )
