"""``loader webhook``: the mutating admission webhook that injects the agent into pods."""

from __future__ import annotations

import asyncio
from typing import Any

from loader.commands.common import add_log_level, setup_logging
from loader.hardening import harden_process

# (flag, argparse options); every flag is also LOADER_WEBHOOK_<NAME>.
_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--listen", {"help": "HOST:PORT (default 0.0.0.0:8443; port 0 picks a free one)"}),
    ("--tls-cert", {"help": "PEM certificate chain, re-read when it changes (required)"}),
    ("--tls-key", {"help": "PEM private key for --tls-cert (required)"}),
    ("--tls-reload-interval", {"help": "Seconds between looks for a renewed certificate (10)"}),
    (
        "--insecure",
        {"action": "store_true", "default": None, "help": "Serve plain HTTP (tests only)"},
    ),
    ("--image", {"help": "The loader image to inject (required)"}),
    (
        "--image-pull-policy",
        {"choices": ["Always", "IfNotPresent", "Never"], "help": "(default IfNotPresent)"},
    ),
    ("--store-url", {"help": "The store as pods reach it, e.g. http://loader-store.loader:8700"}),
    (
        "--token-secret",
        {"help": "Secret holding the agent token, in the pod's namespace (loader-agent-token)"},
    ),
    ("--token-secret-key", {"help": "Key of the token in that Secret (token)"}),
    ("--ca-configmap", {"help": "ConfigMap with ca.crt, to verify an https store"}),
    ("--mount-path", {"help": "Where app containers see the secrets (/secrets)"}),
    ("--agent-port", {"type": int, "help": "The agent's loopback port (8701)"}),
    ("--run-as-user", {"type": int, "help": "uid of the injected containers by default (65532)"}),
    ("--render-timeout", {"help": "The init container gives up after this long (60s)"}),
    (
        "--client-label",
        {"help": "KEY=VALUE label added to injected pods (loader.dev/client=true; '' for none)"},
    ),
    ("--cpu-request", {"help": "Per injected container (10m)"}),
    ("--cpu-limit", {"help": "Per injected container (200m)"}),
    ("--memory-request", {"help": "Per injected container (64Mi)"}),
    ("--memory-limit", {"help": "Per injected container (256Mi)"}),
]


def build(name: str, p: Any) -> None:
    p.description = (
        "Serves POST /mutate (admission.k8s.io/v1 AdmissionReview for Pods) and GET /healthz "
        'over TLS. A pod annotated loader.dev/inject: "true" with loader.dev/app (and '
        "optionally loader.dev/environment, loader.dev/format, loader.dev/template) gets a "
        "memory volume, a `render --once` init container and the agent sidecar."
    )
    p.epilog = "Every option is also an environment variable LOADER_WEBHOOK_<NAME> (the flag wins)."
    for flag, kwargs in _FLAGS:
        p.add_argument(flag, **kwargs)
    add_log_level(p)
    p.set_defaults(handler=run)


def run(ns: Any) -> int:
    from loader.webhook.settings import load_settings

    flags = {
        flag[2:].replace("-", "_"): getattr(ns, flag[2:].replace("-", "_")) for flag, _ in _FLAGS
    }
    settings = load_settings(**flags, log_level=ns.log_level)
    setup_logging(settings.log_level)
    harden_process()
    from loader.webhook.server import run_webhook

    asyncio.run(run_webhook(settings))
    return 0
