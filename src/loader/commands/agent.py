"""``loader agent`` (the sidecar daemon) and ``loader render --once`` (the init container)."""

from __future__ import annotations

import asyncio
from typing import Any

from loader.commands.common import add_log_level, setup_logging
from loader.credentials import scrub_environ
from loader.errors import UsageError
from loader.formats import FORMATS
from loader.hardening import harden_process
from loader.settings import AgentSettings, load

_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--store-url",), {"help": "The store (LOADER_STORE_URL), e.g. http://loader-store:8700"}),
    (
        ("--token-file",),
        {
            "help": "File holding the token, re-read when it changes "
            "(LOADER_TOKEN_FILE; or set LOADER_TOKEN)"
        },
    ),
    (("--app",), {"help": "App name or id (LOADER_APP)"}),
    (
        ("--environment", "--env"),
        {"dest": "environment", "help": "Environment (LOADER_ENVIRONMENT; default: default)"},
    ),
    (("--output",), {"help": "Env file to write (LOADER_OUTPUT)"}),
    (
        ("--format",),
        {
            "choices": list(FORMATS),
            "help": "Env file format (LOADER_FORMAT; default dotenv)",
        },
    ),
    (("--template",), {"help": "Spicepod or any text file with ${secrets:NAME} (LOADER_TEMPLATE)"}),
    (("--template-output",), {"help": "Where the rendered template goes (LOADER_TEMPLATE_OUTPUT)"}),
    (
        ("--template-format",),
        {
            "choices": ["auto", "yaml", "json", "text"],
            "help": "Template syntax (default: by extension)",
        },
    ),
    (("--names",), {"help": "Only these secrets, comma-separated (LOADER_NAMES)"}),
    (
        ("--allow-disk",),
        {
            "action": "store_true",
            "default": None,
            "help": "Allow writing secrets outside tmpfs/ramfs (LOADER_ALLOW_DISK)",
        },
    ),
    (("--ca-file",), {"help": "CA bundle for an https store (LOADER_CA_FILE)"}),
]


def _add_flags(p: Any, *, daemon: bool) -> None:
    for names, kwargs in _FLAGS:
        p.add_argument(*names, **kwargs)
    if daemon:
        p.add_argument(
            "--listen",
            help="Local endpoint: 127.0.0.1:PORT, [::1]:PORT, "
            "unix:/path.sock or off (LOADER_LISTEN; default 127.0.0.1:8701)",
        )
        p.add_argument(
            "--on-change",
            help="Command run after each re-render, e.g. 'kill -HUP 1' (LOADER_ON_CHANGE)",
        )
        p.add_argument(
            "--max-stale", help="/readyz fails when the data is older, e.g. 5m (LOADER_MAX_STALE)"
        )
        p.add_argument("--wait", help="Long-poll hold in seconds, at most 60 (LOADER_WAIT)")
    add_log_level(p, log_file=daemon)


def build(name: str, p: Any) -> None:
    if name == "agent":
        p.description = (
            "Follows one app/environment by long-poll, rewrites the env file and template "
            "within a second of a change (only on tmpfs unless --allow-disk), keeps the last "
            "good files while the store is away, and serves /v1/secrets, /healthz, /readyz and "
            "/metrics on loopback or a unix socket."
        )
        _add_flags(p, daemon=True)
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
    p.add_argument("--timeout", help="Give up after this long, e.g. 30s (LOADER_TIMEOUT)")
    _add_flags(p, daemon=False)
    p.set_defaults(handler=render_once)


def _settings(ns: Any, **extra: Any) -> AgentSettings:
    return load(
        AgentSettings,
        store_url=ns.store_url,
        token_file=ns.token_file,
        app=ns.app,
        environment=ns.environment,
        output=ns.output,
        format=ns.format,
        template=ns.template,
        template_output=ns.template_output,
        template_format=ns.template_format,
        names=ns.names,
        allow_disk=ns.allow_disk,
        ca_file=ns.ca_file,
        log_level=ns.log_level,
        log_file=getattr(ns, "log_file", None),
        **extra,
    )


def agent(ns: Any) -> int:
    settings = _settings(
        ns, listen=ns.listen, on_change=ns.on_change, max_stale=ns.max_stale, wait=ns.wait
    )
    reopen_log = setup_logging(settings.log_level, settings.log_file)
    harden_process()
    from loader.agent.daemon import Agent

    daemon = Agent(settings)  # every local check happens here, before any network call
    scrub_environ()

    async def main() -> None:
        from loader.console import tune_gc, until_signalled

        tune_gc()
        # SIGHUP reopens the log file (log rotation); it never stops the agent.
        stop = asyncio.ensure_future(until_signalled(on_hangup=reopen_log))
        await daemon.run(stop)

    from loader.console import run_async

    run_async(main())
    return 0


def render_once(ns: Any) -> int:
    if not ns.once:
        raise UsageError("render needs --once")
    settings = _settings(ns, timeout=ns.timeout, listen="off")
    setup_logging(settings.log_level)
    harden_process()
    from loader.agent.daemon import Agent

    daemon = Agent(settings)
    scrub_environ()
    from loader.console import run_async

    result = run_async(daemon.render_once(settings.timeout))
    written = ", ".join(str(p) for p in result.written) or "unchanged"
    print(
        f"rendered {len(daemon.latest.values) if daemon.latest else 0} secret(s): {written}",
        flush=True,
    )
    return 0
