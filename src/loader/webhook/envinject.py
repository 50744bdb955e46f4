"""Secrets as environment variables in any image: what the webhook adds for the containers a
pod names in ``loader.dev/inject-env``. Pure: dicts in, dicts out (:mod:`loader.webhook.inject`
puts the pieces into its patch).

- ``loader-run``: an ``emptyDir`` with ``medium: Memory``, filled by the init container
  ``loader-run-copy`` with the standalone runner from the loader image (built by
  scripts/build-loader-run: it needs no Python in the app's image), mounted read-only at
  :data:`RUNNER_DIR` in each named container;
- each named container's command becomes ``loader-run --agent-url http://127.0.0.1:PORT
  --timeout T [--watch] [--mask] -- <its command and args>``: the runner gets the secrets from
  the agent over the pod's loopback and execs the original command with them (or, with
  ``--watch`` / ``--mask``, stays as its parent).

The original command is the container's ``command`` plus its ``args``. A container without
``command`` runs its image's ENTRYPOINT, which the webhook cannot read: then
``loader.dev/command.<container>`` must give it, as a JSON array (it stands where ``command``
would, and the container's ``args`` still follow it); with neither, the pod is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loader.webhook.settings import WebhookSettings

INJECT_ENV = "loader.dev/inject-env"
ENV_WATCH = "loader.dev/env-watch"
ENV_MASK = "loader.dev/env-mask"
COMMAND_PREFIX = "loader.dev/command."

RUNNER_VOLUME = "loader-run"
COPY_CONTAINER = "loader-run-copy"
# Where the image keeps the frozen runner (the Dockerfile puts it there) and where app
# containers see the copy.
IMAGE_RUNNER_DIR = "/opt/loader-run"
RUNNER_DIR = "/loader-run"
RUNNER = f"{RUNNER_DIR}/loader-run"
# The runner's directory is ~21 MiB; the memory volume counts against the pod's memory.
RUNNER_SIZE_LIMIT = "48Mi"


class EnvInjectionError(ValueError):
    """An env-injection annotation that cannot work (the caller denies the pod with it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One app container to run under ``loader-run``."""

    index: int
    name: str
    command: list[str]
    watch: bool
    mask: bool
    has_args: bool


def names_in(annotations: dict[str, Any], key: str) -> list[str]:
    raw = annotations.get(key)
    if raw is None:
        return []
    return [n.strip() for n in str(raw).split(",") if n.strip()]


def wants_env(annotations: dict[str, Any]) -> bool:
    return bool(names_in(annotations, INJECT_ENV))


def _command_annotation(annotations: dict[str, Any], name: str) -> list[str] | None:
    key = COMMAND_PREFIX + name
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(str(raw))
    except ValueError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise EnvInjectionError(
            f'{key} must be a JSON array of strings, e.g. ["/usr/local/bin/spiced"]'
        )
    return value


def targets(annotations: dict[str, Any], containers: list[Any]) -> list[Target]:
    """The containers named in :data:`INJECT_ENV`, each with the command it will run."""
    wanted = names_in(annotations, INJECT_ENV)
    watch, mask = names_in(annotations, ENV_WATCH), names_in(annotations, ENV_MASK)
    for key, names in ((ENV_WATCH, watch), (ENV_MASK, mask)):
        stray = sorted(set(names) - set(wanted))
        if stray:
            raise EnvInjectionError(f"{key} names {', '.join(stray)}, not in {INJECT_ENV}")
    by_name = {str(c.get("name")): i for i, c in enumerate(containers) if isinstance(c, dict)}
    found: list[Target] = []
    for name in dict.fromkeys(wanted):
        if name not in by_name:
            raise EnvInjectionError(f"{INJECT_ENV} names {name!r}, not a container of this pod")
        container = containers[by_name[name]]
        own = container.get("command")
        annotated = _command_annotation(annotations, name)
        if own and annotated is not None:
            raise EnvInjectionError(
                f"container {name} has a command and {COMMAND_PREFIX}{name} too: keep one"
            )
        if not own and annotated is None:
            raise EnvInjectionError(
                f"container {name} has no command in the pod spec (it runs its image's "
                f"entrypoint, which the webhook cannot read): set {COMMAND_PREFIX}{name} to it "
                'as a JSON array, e.g. ["/usr/local/bin/spiced"], or give the container a command'
            )
        args = container.get("args") or []
        if not isinstance(own or [], list) or not isinstance(args, list):
            raise TypeError(f"container {name}: command or args is not a list")
        command = [str(c) for c in (own or annotated or [])] + [str(a) for a in args]
        found.append(
            Target(
                index=by_name[name],
                name=name,
                command=command,
                watch=name in watch,
                mask=name in mask,
                has_args="args" in container,
            )
        )
    return found


def runner_command(target: Target, settings: WebhookSettings) -> list[str]:
    flags = [
        "--agent-url",
        f"http://127.0.0.1:{settings.agent_port}",
        # The agent may still be starting (a classic sidecar starts beside the app).
        "--timeout",
        settings.render_timeout,
    ]
    if target.watch:
        flags.append("--watch")
    if target.mask:
        flags.append("--mask")
    return [RUNNER, *flags, "--", *target.command]


def volume() -> dict[str, Any]:
    return {"name": RUNNER_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": RUNNER_SIZE_LIMIT}}


def mount() -> dict[str, Any]:
    return {"name": RUNNER_VOLUME, "mountPath": RUNNER_DIR, "readOnly": True}


def copy_container(
    settings: WebhookSettings, security_context: dict[str, Any], resources: dict[str, Any]
) -> dict[str, Any]:
    """Copies the runner's directory out of the loader image into the memory volume."""
    return {
        "name": COPY_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["cp", "-R", f"{IMAGE_RUNNER_DIR}/.", f"{RUNNER_DIR}/"],
        "volumeMounts": [{"name": RUNNER_VOLUME, "mountPath": RUNNER_DIR}],
        "resources": resources,
        "securityContext": security_context,
    }


def container_ops(target: Target, settings: WebhookSettings) -> list[dict[str, Any]]:
    """The container's new command (``add`` replaces one that is there) and, its args folded
    into that command, their removal."""
    path = f"/spec/containers/{target.index}"
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": f"{path}/command", "value": runner_command(target, settings)}
    ]
    if target.has_args:
        ops.append({"op": "remove", "path": f"{path}/args"})
    return ops
