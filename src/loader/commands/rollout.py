"""``loader rollout status`` (has every live consumer picked up the newest revision?) and
``loader rollout budget`` (how many runners may restart at once), like ``kubectl rollout``."""

from __future__ import annotations

import sys
import time

from loader.commands.invocation import Target, add_command_options, duration
from loader.errors import EX_TEMPFAIL, UsageError
from loader.output import print_json, say

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

POLL = 1.0
SHOWN = 20  # consumers named when a rollout is not done


def build(name: str, p: Any) -> None:
    sub = p.add_subparsers(dest="rollout_command", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "status",
        help="Has every live consumer picked up the newest revision?",
        description="Exit 0 when every live agent and runner of the environment runs its "
        "newest revision; else (or when --wait times out, or the rollout is paused by a "
        "runner whose new child failed) exit 75, naming who has not.",
    )
    s.add_argument("--wait", action="store_true", help="Wait until done (or --timeout)")
    s.add_argument("--timeout", default="5m", help="How long --wait waits (default 5m)")
    add_command_options(s)
    s.set_defaults(handler=status)
    b = sub.add_parser(
        "budget",
        help="Show or set how many runners may restart at once",
        description="The restart budget of an environment: --watch runners take a slot before "
        "they restart and give it back once the new child is healthy.",
    )
    b.add_argument(
        "--max-unavailable",
        metavar="N|P%|none",
        help="Set it: a count (3), a percentage of the live runners (10%%), or none",
    )
    add_command_options(b)
    b.set_defaults(handler=budget)


def describe(fleet: dict[str, Any]) -> str:
    """One line: how far the rollout is."""
    r = fleet["rollout"]
    counts = r["counts"]
    total = sum(n for s, n in counts.items() if s != "once")
    others = ", ".join(
        f"{counts[s]} {s}" for s in ("restarting", "waiting", "behind", "failed") if counts.get(s)
    )
    line = f"revision {fleet['revision']}: {counts.get('current', 0)} of {total} on it"
    if others:
        line += f" ({others})"
    if r["slots"] is not None:
        line += f"; budget {r['max_unavailable']}: {r['in_use']} of {r['slots']} slots in use"
    if r["paused"]:
        line += "; PAUSED"
    return line


def laggards(fleet: dict[str, Any]) -> list[str]:
    """The consumers not on the newest revision, one line each (at most :data:`SHOWN`)."""
    lines = []
    for c in fleet["consumers"]:
        if c["state"] in ("current", "once"):
            continue
        runs = (
            c["running_revision"] if c["running_revision"] is not None else c["rendered_revision"]
        )
        lines.append(
            f"  {c['kind']} {c['id']} on {c['host'] or '?'}: {c['state']}, revision {runs}"
            + (f" (failed at {c['failed_revision']})" if c["failed_revision"] else "")
        )
    if len(lines) > SHOWN:
        lines = [*lines[:SHOWN], f"  ... and {len(lines) - SHOWN} more"]
    return lines


def status(ns: Any) -> int:
    timeout = duration(ns.timeout, "rollout status: --timeout")
    if timeout <= 0:
        raise UsageError("rollout status: --timeout must be more than 0")
    target = Target(ns)
    path = target.env_path("/consumers")
    deadline = time.monotonic() + timeout
    tty = sys.stderr.isatty() and not ns.json
    shown = ""
    while True:
        fleet = target.client.call("GET", path).json()
        rollout = fleet["rollout"]
        line = describe(fleet)
        finished = rollout["done"] or rollout["paused"] or not ns.wait
        if ns.wait and not finished and not ns.json and line != shown:
            if tty:
                sys.stderr.write(f"\r\x1b[KWaiting: {line}")
                sys.stderr.flush()
            else:
                sys.stderr.write(f"Waiting: {line}\n")
            shown = line
        if finished or time.monotonic() >= deadline:
            break
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
    if tty and shown:
        sys.stderr.write("\r\x1b[K")
    if ns.json:
        print_json(fleet)
    else:
        where = target.where()
        if rollout["done"]:
            say(f"{where}: rollout complete: {line}")
        else:
            say(f"{where}: {line}")
            for text in laggards(fleet):
                say(text)
    if rollout["done"]:
        return 0
    if rollout["paused"]:
        why = "paused: a runner's new child did not become healthy (write a fixed revision)"
    elif ns.wait:
        why = f"not complete after {ns.timeout}"
    else:
        why = "not complete"
    sys.stderr.write(f"loader: rollout status: {target.where()}: {why}\n")
    return EX_TEMPFAIL


def budget(ns: Any) -> int:
    target = Target(ns)
    path = target.env_path("/rollout")
    if ns.max_unavailable is None:
        policy = target.client.call("GET", path).json()
    else:
        raw = ns.max_unavailable.strip()
        value = None if raw.lower() == "none" else raw
        policy = target.client.call("PUT", path, {"max_unavailable": value}).json()
    if ns.json:
        print_json(policy)
    elif policy["max_unavailable"] is None:
        say(f"{target.where()}: no restart budget (every runner restarts at once)")
    else:
        say(
            f"{target.where()}: max-unavailable {policy['max_unavailable']} "
            f"({policy['slots']} slot(s) for the live runners now, {policy['in_use']} in use)"
        )
    return 0
