"""``loader agent`` (the sidecar daemon) and ``loader render --once`` (the init container)."""

from __future__ import annotations

import asyncio
from typing import Any

from loader.commands.invocation import setup_logging
from loader.credentials import scrub_environ
from loader.hardening import harden_process
from loader.settings import AGENT, RENDER, AgentSettings, add_flags, flags_given
from loader.settingtypes import load


def build(name: str, p: Any) -> None:
    if name == "agent":
        p.description = (
            "Follows one app/environment by long-poll, rewrites the env file and templates "
            "within a second of a change (only on tmpfs unless --allow-disk), keeps the last "
            "good files while the store is away, and serves /v1/secrets, /healthz, /readyz and "
            "/metrics on loopback or a unix socket."
        )
        add_flags(p, AGENT)
        p.set_defaults(handler=agent)
        return
    p.description = (
        "Exit codes: 0 rendered; 69 store unreachable within --timeout; 77 token refused; "
        "65 a value or template could not be rendered; 66 a --names secret is not set; "
        "78 bad setting."
    )
    p.add_argument(
        "--once", action="store_true", required=True, help="Render once and exit (the only mode)"
    )
    add_flags(p, RENDER)
    p.set_defaults(handler=render_once)


def _settings(ns: Any, **extra: Any) -> AgentSettings:
    return load(AgentSettings, **{**flags_given(ns), **extra})


def agent(ns: Any) -> int:
    settings = _settings(ns)
    reopen_log = setup_logging(settings.log_level, settings.log_file)
    harden_process()
    from loader.agent.daemon import Agent

    daemon = Agent(settings)  # every local check happens here, before any network call
    scrub_environ()

    async def main() -> None:
        from loader.eventloop import tune_gc, until_signalled

        tune_gc()
        # SIGHUP reopens the log file (log rotation); it never stops the agent.
        stop = asyncio.ensure_future(until_signalled(on_hangup=reopen_log))
        await daemon.run(stop)

    from loader.eventloop import run_async

    run_async(main())
    return 0


def render_once(ns: Any) -> int:
    settings = _settings(ns, listen="off")
    setup_logging(settings.log_level)
    harden_process()
    from loader.agent.daemon import Agent

    daemon = Agent(settings)
    scrub_environ()
    from loader.eventloop import run_async

    result = run_async(daemon.render_once(settings.timeout))
    written = ", ".join(str(p) for p in result.written) or "unchanged"
    print(
        f"rendered {len(daemon.latest.values) if daemon.latest else 0} secret(s): {written}",
        flush=True,
    )
    return 0
