"""Warn about ``LOADER_*`` variables loader does not read (``LOADER_ENV=prod`` is a typo of
``LOADER_ENVIRONMENT``, silently ignored otherwise), naming the closest known one.

Stdlib only and cheap (``loader run`` calls it on its exec path): ``difflib`` is imported only
when there is an unknown variable. ``KNOWN`` is checked against every settings class by the
tests, so a new setting cannot be forgotten here.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

KNOWN = frozenset(
    {
        # clients, the agent, the runner
        "LOADER_TOKEN",
        "LOADER_TOKEN_FILE",
        "LOADER_STORE_URL",
        "LOADER_CA_FILE",
        "LOADER_APP",
        "LOADER_ENVIRONMENT",
        "LOADER_AGENT_URL",
        "LOADER_OUTPUT",
        "LOADER_FORMAT",
        "LOADER_TEMPLATE",
        "LOADER_TEMPLATE_OUTPUT",
        "LOADER_TEMPLATE_FORMAT",
        "LOADER_NAMES",
        "LOADER_LISTEN",
        "LOADER_ALLOW_DISK",
        "LOADER_ON_CHANGE",
        "LOADER_MAX_STALE",
        "LOADER_WAIT",
        "LOADER_TIMEOUT",
        "LOADER_BACKOFF_INITIAL",
        "LOADER_BACKOFF_MAX",
        "LOADER_LOG_LEVEL",
        "LOADER_FROM_FILE",
        "LOADER_LITERAL",
        "LOADER_ONLY",
        "LOADER_PREFIX",
        "LOADER_OVERRIDE",
        "LOADER_WATCH",
        "LOADER_MASK",
        "LOADER_RESTART_SIGNAL",
        "LOADER_RELOAD_SIGNAL",
        "LOADER_SPLAY",
        "LOADER_GRACE",
        "LOADER_DEBOUNCE",
        # the store
        "LOADER_DATA_DIR",
        "LOADER_DATABASE_URL",
        "LOADER_MASTER_KEY_FILE",
        "LOADER_TLS_CERT",
        "LOADER_TLS_KEY",
        "LOADER_RATE_LIMIT",
        "LOADER_RATE_BURST",
        "LOADER_REVEAL_RATE_LIMIT",
        "LOADER_WRITE_RATE_LIMIT",
        "LOADER_AUDIT_FILE",
        "LOADER_MAX_VERSIONS",
        "LOADER_MIGRATE",
        "LOADER_ACCESS_TOKEN_TTL",
        "LOADER_JWT_LEEWAY",
        "LOADER_DB_TIMEOUT",
        "LOADER_DB_ACQUIRE_TIMEOUT",
        "LOADER_READY_TIMEOUT",
        "LOADER_MIN_FREE_SPACE_MB",
        "LOADER_AUDIT_QUEUE_MAX",
        "LOADER_ALLOW_UNAUDITED_REVEALS",
        "LOADER_LOG_FILE",
        "LOADER_MAX_LONG_POLLS_PER_TOKEN",
        "LOADER_REFUSAL_RATE_LIMIT",
        "LOADER_REFUSAL_BURST",
        "LOADER_MAX_CONNECTIONS_PER_CLIENT",
        "LOADER_HEADER_TIMEOUT",
        # the container image's health check
        "LOADER_HEALTHCHECK_URL",
        # the webhook
        "LOADER_WEBHOOK_LISTEN",
        "LOADER_WEBHOOK_TLS_CERT",
        "LOADER_WEBHOOK_TLS_KEY",
        "LOADER_WEBHOOK_TLS_RELOAD_INTERVAL",
        "LOADER_WEBHOOK_INSECURE",
        "LOADER_WEBHOOK_IMAGE",
        "LOADER_WEBHOOK_IMAGE_PULL_POLICY",
        "LOADER_WEBHOOK_STORE_URL",
        "LOADER_WEBHOOK_TOKEN_SECRET",
        "LOADER_WEBHOOK_TOKEN_SECRET_KEY",
        "LOADER_WEBHOOK_CA_CONFIGMAP",
        "LOADER_WEBHOOK_MOUNT_PATH",
        "LOADER_WEBHOOK_AGENT_PORT",
        "LOADER_WEBHOOK_RUN_AS_USER",
        "LOADER_WEBHOOK_RENDER_TIMEOUT",
        "LOADER_WEBHOOK_CLIENT_LABEL",
        "LOADER_WEBHOOK_CPU_REQUEST",
        "LOADER_WEBHOOK_CPU_LIMIT",
        "LOADER_WEBHOOK_MEMORY_REQUEST",
        "LOADER_WEBHOOK_MEMORY_LIMIT",
        "LOADER_WEBHOOK_LOG_LEVEL",
    }
)


def is_service_link(name: str) -> bool:
    """Kubernetes service links: a Service ``loader-store`` exports ``LOADER_STORE_PORT``,
    ``LOADER_STORE_SERVICE_HOST``, ``LOADER_STORE_PORT_8700_TCP_ADDR`` and so on."""
    if "_SERVICE_HOST" in name or "_SERVICE_PORT" in name:
        return True
    if name.endswith("_PORT"):
        return True
    _, sep, tail = name.partition("_PORT_")
    return bool(sep) and tail[:1].isdigit()


def unknown(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(variable, closest known name or None)`` for each ``LOADER_*`` variable not read."""
    found = sorted(
        k for k in environ if k.startswith("LOADER_") and k not in KNOWN and not is_service_link(k)
    )
    if not found:
        return []
    import difflib

    out: list[tuple[str, str | None]] = []
    for name in found:
        # LOADER_ENV -> LOADER_ENVIRONMENT: a known name it begins is the best hint; then the
        # closest spelling of the part after LOADER_ (the shared prefix says nothing).
        close = sorted((k for k in KNOWN if k.startswith(name)), key=len)[:1]
        if not close:
            tails = {k.removeprefix("LOADER_"): k for k in KNOWN}
            match = difflib.get_close_matches(name.removeprefix("LOADER_"), tails, 1, 0.6)
            close = [tails[m] for m in match]
        out.append((name, close[0] if close else None))
    return out


def warn_unknown(environ: Mapping[str, str] | None = None) -> None:
    for name, close in unknown(os.environ if environ is None else environ):
        hint = f" (did you mean {close}?)" if close else ""
        print(f"loader: warning: {name} is not a loader setting; ignored{hint}", file=sys.stderr)
