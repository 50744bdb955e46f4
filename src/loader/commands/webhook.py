"""``loader webhook``: the mutating admission webhook that injects the agent into pods."""

from __future__ import annotations

import asyncio
from typing import Any

from loader.commands.invocation import setup_logging
from loader.envsettings import add_flags, flags_given
from loader.hardening import harden_process
from loader.webhook.settings import WebhookSettings, load_settings


def build(name: str, p: Any) -> None:
    p.description = (
        "Serves POST /mutate (admission.k8s.io/v1 AdmissionReview for Pods) and GET /healthz "
        'over TLS. A pod annotated loader.dev/inject: "true" with loader.dev/app (and '
        "optionally loader.dev/environment, loader.dev/format, loader.dev/template) gets a "
        "memory volume, a `render --once` init container and the agent sidecar."
    )
    p.epilog = "Every option is also an environment variable LOADER_WEBHOOK_<NAME> (the flag wins)."
    add_flags(p, WebhookSettings)
    p.set_defaults(handler=run)


def run(ns: Any) -> int:
    settings = load_settings(**flags_given(ns, WebhookSettings))
    setup_logging(settings.log_level)
    harden_process()
    from loader.webhook.server import run_webhook

    asyncio.run(run_webhook(settings))
    return 0
