"""``loader dev``: store + agent + runner with a demo app, on the embedded default."""

from __future__ import annotations

from typing import Any

from loader.commands.invocation import add_settings, setup_logging
from loader.hardening import harden_process


def build(name: str, p: Any) -> None:
    p.description = (
        "Starts an embedded SQLite store in a temporary directory with a generated master key "
        "and a demo app, prints the admin token and URLs, and runs until Ctrl-C."
    )
    p.add_argument(
        "--port", type=int, default=8700, help="Store port (default 8700; a free port if taken)"
    )
    p.add_argument(
        "--agent-port",
        type=int,
        default=8701,
        help="Agent endpoint port (default 8701; a free port if taken)",
    )
    add_settings(p, "log_level")
    p.set_defaults(handler=run)


def run(ns: Any) -> int:
    setup_logging(ns.log_level)
    harden_process()
    from loader.dev import main

    return main(ns.port, ns.agent_port)
