"""``loader audit``: an app's audit log (who did what to which secret; names, never values)."""

from __future__ import annotations

from loader.commands.invocation import Target, add_client_options, add_settings
from loader.output import print_json, say

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def build(name: str, p: Any) -> None:
    add_settings(p, "app")
    p.add_argument("--action", help="Only this action, e.g. reveal, upsert_secret, delete_app")
    p.add_argument("--name", help="Only events on this secret")
    p.add_argument("--since", help="Only events at or after this time (ISO 8601 with a zone)")
    p.add_argument("--limit", type=int, default=100, help="At most this many events (100)")
    p.add_argument("--json", action="store_true", help="Print JSON")
    add_client_options(p)
    p.set_defaults(handler=audit)


def audit(ns: Any) -> int:
    from urllib.parse import urlencode

    from loader.errors import UsageError

    if not 1 <= ns.limit <= 10_000:
        raise UsageError("audit: --limit must be from 1 to 10000")
    target = Target(ns)
    query: dict[str, str] = {}
    for key in ("action", "name", "since"):
        value = getattr(ns, key)
        if value:
            query[key] = value
    events: list[dict[str, Any]] = []
    page = 1
    total = 0
    while len(events) < ns.limit:
        size = min(1000, ns.limit - len(events))
        params = urlencode({**query, "page": page, "page_size": size})
        data = target.client.call("GET", target.app_path(f"/audit?{params}")).json()
        events.extend(data["events"])
        total = data["total"]
        if len(data["events"]) < size or page * size >= total:
            break
        page += 1
    if ns.json:
        print_json({"events": events, "total": total})
        return 0
    say(f"{'AT':<27} {'ACTION':<20} {'OUTCOME':<12} {'TOKEN':<16} {'ENV':<12} NAMES")
    for e in events:
        say(
            f"{e['at']:<27} {e['action']:<20} {e['outcome']:<12} {e['token_id'] or '-':<16} "
            f"{e['environment'] or '-':<12} {','.join(e['names']) or '-'}"
        )
    return 0
