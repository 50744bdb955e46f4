"""Workload identity, the client side (``LOADER_AUTH=jwt``): the agent, ``render --once`` and
``loader run`` trade the workload's JWT -- a projected Kubernetes service-account token, a CI
job's OIDC token, read from ``LOADER_JWT_FILE`` -- for a short-lived loader access token at the
store's ``POST /oauth/token`` (RFC 7523 jwt-bearer grant), and trade again before it expires,
reading the file afresh each time (the kubelet rewrites it as it rotates the token).

The client never verifies the JWT: the store does. This module is what the clients share: the
request, the reading of the answer and when to renew. Stdlib only: ``loader run`` imports it on
its exec path.
"""

from __future__ import annotations

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUTH_MODES = ("token", "jwt")
DEFAULT_JWT_FILE = "/var/run/secrets/tokens/loader"
"""Where the chart and the webhook mount the projected service-account token."""

RENEW_AT = 2 / 3  # of an access token's lifetime: renewed when a third of it is left


def token_request(assertion: str) -> dict[str, str]:
    return {"grant_type": JWT_BEARER, "assertion": assertion}


class Grant:
    """An access token the store issued, and when to trade for the next one."""

    __slots__ = ("expires_at", "renew_at", "token")

    def __init__(self, token: str, expires_at: float, renew_at: float) -> None:
        self.token, self.expires_at, self.renew_at = token, expires_at, renew_at

    def due(self, now: float) -> bool:
        return now >= self.renew_at

    def valid_for(self, now: float) -> float:
        """Seconds until it is due for renewal (a long-poll holds no longer than this)."""
        return max(0.0, self.renew_at - now)


def read_grant(body: bytes, now: float) -> Grant:
    """The store's answer to a token request (``access_token``, ``expires_in``)."""
    import json

    from loader.errors import ServiceUnavailableError

    try:
        data = json.loads(body)
        token, lifetime = str(data["access_token"]), float(data["expires_in"])
    except (ValueError, KeyError, TypeError):
        raise ServiceUnavailableError("the store's token answer is not one") from None
    return Grant(token, now + lifetime, now + lifetime * RENEW_AT)
