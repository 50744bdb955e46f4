"""``loader store trust create|list|delete``: trust policies for workload identity, on the
database directly (as ``store token`` works). A running store sees a new policy at the next
exchange, and a deleted one at once (its access tokens stop working; held requests are woken)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loader.errors import NotFoundError
from loader.output import print_json, say

if TYPE_CHECKING:
    from loader.store.models import TrustPolicy

DEFAULT_TTL = "15m"


def register(
    ssub: Any,
    location: Callable[[Any], None],
    grant: Callable[[Any], None],
    **store: Callable[..., Any],
) -> None:
    """The subcommands, with the flags and helpers :mod:`loader.commands.store` owns (given:
    ``settings``, ``on_database``, ``binding``; set on each command's namespace)."""
    trust = ssub.add_parser(
        "trust",
        help="Workload identity: trust policies for Kubernetes service accounts and CI jobs",
        description="A workload presents its JWT (a projected service-account token, a CI "
        "job's OIDC token) at POST /oauth/token and gets an access token with the grant of the "
        "one policy it matches: issuer, audience and every claim condition.",
    )
    tsub = trust.add_subparsers(dest="trust_command", metavar="COMMAND", required=True)
    p = tsub.add_parser("create", help="Trust an issuer's tokens that match conditions")
    location(p)
    p.add_argument("--issuer", required=True, help="The iss its tokens carry (exact)")
    p.add_argument("--jwks-url", help="Where the issuer publishes its keys (https)")
    p.add_argument("--jwks-file", help="Or a file holding them (JWKS JSON)")
    p.add_argument("--audience", required=True, help="The aud its tokens must carry")
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="CLAIM=VALUE",
        help="A condition: the claim (dotted path) must equal VALUE, or match it as a glob "
        "(*, ?); repeat for more (all must hold)",
    )
    p.add_argument("--k8s-namespace", help="Kubernetes: the pod's namespace (a glob may do)")
    p.add_argument("--k8s-service-account", help="Kubernetes: its service account's name")
    grant(p)
    p.add_argument(
        "--ttl", default=DEFAULT_TTL, help=f"Access token lifetime, 1m..24h (default {DEFAULT_TTL})"
    )
    p.add_argument("--description", help="A note shown in `trust list`")
    p.add_argument("--json", action="store_true", help="Print one JSON object")
    p.set_defaults(handler=create, **store)
    p = tsub.add_parser("list", help="List the trust policies")
    location(p)
    p.add_argument("--json", action="store_true", help="Print JSON")
    p.set_defaults(handler=list_policies, **store)
    p = tsub.add_parser("delete", help="Delete a trust policy: its access tokens stop working")
    location(p)
    p.add_argument("id", help="The policy id (tp_...)")
    p.set_defaults(handler=delete, **store)


def _conditions(ns: Any) -> dict[str, str]:
    from loader.store import trust

    conditions = dict(trust.parse_condition(c) for c in ns.claim)
    if ns.k8s_namespace:
        conditions[trust.K8S_NAMESPACE] = ns.k8s_namespace
    if ns.k8s_service_account:
        conditions[trust.K8S_SERVICE_ACCOUNT] = ns.k8s_service_account
    return conditions


def policy_json(policy: TrustPolicy) -> dict[str, Any]:
    from loader.store.models import iso

    return {
        "id": policy.id,
        "issuer": policy.issuer,
        "jwks_url": policy.jwks_url,
        "jwks_file": policy.jwks_file,
        "audience": policy.audience,
        "conditions": dict(policy.conditions),
        "scopes": sorted(policy.scopes),
        "app": policy.app_id,
        "environments": list(policy.environments) if policy.environments else None,
        "ttl": policy.ttl,
        "created_at": iso(policy.created_at),
        "description": policy.description,
    }


def create(ns: Any) -> int:
    from loader.commands.invocation import duration
    from loader.store.auth import parse_scopes
    from loader.store.models import utcnow
    from loader.store.trust import make_policy

    settings = ns.settings(ns)
    scopes = parse_scopes(ns.scopes)
    conditions = _conditions(ns)
    ttl = int(duration(ns.ttl, "--ttl"))

    async def created(repo: Any) -> TrustPolicy:
        app_id, envs = await ns.binding(repo, ns.app, ns.env)
        policy = make_policy(
            issuer=ns.issuer,
            audience=ns.audience,
            conditions=conditions,
            scopes=scopes,
            app_id=app_id,
            environments=envs,
            ttl=ttl,
            now=utcnow(),
            jwks_url=ns.jwks_url,
            jwks_file=ns.jwks_file,
            description=ns.description,
        )
        await repo.create_trust_policy(policy)
        return policy

    policy = ns.on_database(settings, created)
    if ns.json:
        print_json(policy_json(policy))
    else:
        say(policy.id)
    return 0


def list_policies(ns: Any) -> int:
    async def listed(repo: Any) -> list[dict[str, Any]]:
        return [policy_json(p) for p in await repo.list_trust_policies()]

    rows = ns.on_database(ns.settings(ns), listed)
    if ns.json:
        print_json({"policies": rows})
        return 0
    say(f"{'ID':<16} {'APP':<5} {'ENVS':<16} {'TTL':<6} {'SCOPES':<28} ISSUER / AUDIENCE / CLAIMS")
    for r in rows:
        claims = " ".join(f"{k}={v}" for k, v in r["conditions"].items())
        say(
            f"{r['id']:<16} {r['app'] or '*':<5} {','.join(r['environments'] or ['*']):<16} "
            f"{r['ttl']:<6} {','.join(r['scopes']):<28} {r['issuer']} / {r['audience']} / {claims}"
        )
    return 0


def delete(ns: Any) -> int:
    from loader.errors import shown
    from loader.store.models import utcnow

    deleted = ns.on_database(
        ns.settings(ns), lambda repo: repo.delete_trust_policy(ns.id, utcnow())
    )
    if not deleted:
        raise NotFoundError(f"no trust policy with id {shown(ns.id)}")
    say(f"deleted {ns.id}")
    return 0
