"""Workload identity: verify a workload's JWT (PyJWT) and find the trust policy it matches.

The token's ``iss`` picks the candidate policies; its ``kid`` picks a key from their issuer's
JWKS (:mod:`loader.store.jwks`). Only RS256 and ES256 are accepted -- never HS* (a public key
used as an HMAC secret) nor ``none`` -- and the key's type must fit the algorithm. ``exp`` is
required, ``nbf`` and ``iat`` are checked when present, all with the store's small leeway. Then
the policy whose audience the token carries and whose claim conditions hold grants the access;
two policies that both match are refused as ambiguous (no silent "first one wins").

A refusal is :class:`WorkloadRefused`: 401 with a reason code and nothing more (the token and
its claims never go into a message or a log); the audit gets the policy id and the verified
subject where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from loader.errors import UnauthorizedError
from loader.store import trust
from loader.store.jwks import JwksCache, Source
from loader.store.models import TrustPolicy
from loader.store.repository import Repository

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}  # accepted algorithm -> the key type it needs

# The reason codes a refused exchange answers with (and the audit records).
REASONS = (
    "malformed",  # not a JWT, or its claims are not what a JWT's must be
    "unsupported_algorithm",  # not RS256/ES256 (HS*, none, ...)
    "unknown_issuer",  # no trust policy names its iss
    "unknown_key",  # the issuer does not publish its kid (or a key of its type)
    "bad_signature",
    "expired",
    "not_yet_valid",  # nbf (or iat) in the future
    "missing_claim",  # no exp, iss or sub
    "wrong_audience",  # no policy of the issuer has an audience the token carries
    "no_matching_policy",  # the claim conditions of none of them hold
    "ambiguous_policy",  # more than one holds
)


class WorkloadRefused(UnauthorizedError):
    def __init__(
        self, reason: str, policy: TrustPolicy | None = None, subject: str | None = None
    ) -> None:
        super().__init__(f"workload token refused: {reason}")
        self.reason, self.policy, self.subject = reason, policy, subject

    def body(self) -> dict[str, object]:
        return {**super().body(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Match:
    policy: TrustPolicy
    subject: str
    expires_at: float  # the workload token's exp


def source(policy: TrustPolicy) -> Source:
    if policy.jwks_url is not None:
        return ("url", policy.jwks_url)
    assert policy.jwks_file is not None
    return ("file", policy.jwks_file)


class WorkloadVerifier:
    def __init__(self, repo: Repository, jwks: JwksCache, leeway: float = 10.0) -> None:
        self.repo, self.jwks, self.leeway = repo, jwks, leeway

    async def verify(self, assertion: str) -> Match:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise WorkloadRefused("malformed") from None
        alg, kid, issuer = header.get("alg"), header.get("kid"), unverified.get("iss")
        if alg not in ALGORITHMS:
            raise WorkloadRefused("unsupported_algorithm")
        if not isinstance(issuer, str) or not isinstance(kid, str):
            raise WorkloadRefused("missing_claim" if not isinstance(issuer, str) else "unknown_key")
        policies = await self.repo.list_trust_policies(issuer)
        if not policies:
            raise WorkloadRefused("unknown_issuer")
        sources: dict[Source, list[TrustPolicy]] = {}
        for policy in policies:
            sources.setdefault(source(policy), []).append(policy)
        refusal = WorkloadRefused("unknown_key", _only(policies))
        best: Match | None = None
        for where, group in sources.items():
            key = await self.jwks.key(where, kid)
            if key is None or key.key_type != ALGORITHMS[alg]:
                continue
            claims = self._decode(assertion, key, alg, issuer, _only(group))
            subject = trust.subject(claims)
            holding = [p for p in group if trust.has_audience(claims, p.audience)]
            if not holding:
                refusal = WorkloadRefused("wrong_audience", _only(group), subject)
                continue
            found = [p for p in holding if trust.conditions_hold(p.conditions, claims)]
            if not found:
                refusal = WorkloadRefused("no_matching_policy", _only(holding), subject)
                continue
            if len(found) > 1 or best is not None:
                raise WorkloadRefused("ambiguous_policy", None, subject)
            best = Match(found[0], subject, float(claims["exp"]))
        if best is None:
            raise refusal
        return best

    def _decode(
        self, assertion: str, key: jwt.PyJWK, alg: str, issuer: str, policy: TrustPolicy | None
    ) -> Mapping[str, Any]:
        try:
            return jwt.decode(
                assertion,
                key.key,
                algorithms=[alg],
                issuer=issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            reason = "expired"
        except jwt.ImmatureSignatureError:
            reason = "not_yet_valid"
        except jwt.MissingRequiredClaimError:
            reason = "missing_claim"
        except jwt.InvalidSignatureError:
            reason = "bad_signature"
        except jwt.PyJWTError:
            reason = "malformed"
        raise WorkloadRefused(reason, policy)


def _only(policies: list[TrustPolicy]) -> TrustPolicy | None:
    """The policy a refusal is audited under: the one candidate, when there is one."""
    return policies[0] if len(policies) == 1 else None
