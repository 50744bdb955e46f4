"""Every ``LOADER_*`` variable some loader process reads, derived from where each process
declares its settings (never a list of its own).

``loader run`` and the agent must not pay for the other processes' declarations: importing the
agent's table costs ~20 ms of ``loader run``'s start-up, the store's model pydantic (~120 ms and
8 MiB). So the runner's table is read as loaded, and the agent's table and the store's and the
webhook's models are read from their source text: each field is a line ``name: Type = ...`` in
its class body (the declaration itself, nothing copied). The tests check that reading against
the imported classes. Without source files (an install of bytecode only) the classes are
imported instead. The declarations are asked in that order, only while a variable is left
unexplained.
"""

from __future__ import annotations

import os

import loader
from loader.settingtypes import FILE_SUFFIX, PREFIX, TOKEN, env_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Read outside every settings table: the container image's HEALTHCHECK (see the Dockerfile).
OUTSIDE = frozenset({"LOADER_HEALTHCHECK_URL"})
# The classes whose fields are settings: (module, class).
AGENT = ("loader.settings", "AgentSettings")
MODELS = (
    ("loader.server.settings", "StoreSettings"),
    ("loader.webhook.settings", "WebhookSettings"),
)


def declared(module: str, cls: str) -> tuple[str, list[str], list[str]]:
    """``(env prefix, field names, secret field names)`` of class ``cls``, from ``module``'s
    source: the annotated names in the class body (4 spaces in), ``SecretStr`` ones secret,
    the prefix from an ``env_prefix="..."`` there. Raises OSError without a source file."""
    path = os.path.join(os.path.dirname(loader.__file__), *module.split(".")[1:]) + ".py"
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith((f"class {cls}(", f"class {cls}:"))
    )
    prefix, names, secrets = PREFIX, [], []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break  # the class body ended
        if not line.startswith("    ") or line.startswith("     "):
            continue
        name, colon, annotation = line[4:].partition(": ")
        if colon and name.isidentifier():
            names.append(name)
            if "SecretStr" in annotation.partition(" = ")[0]:
                secrets.append(name)
        elif line[4:].startswith("model_config") and 'env_prefix="' in line:
            prefix = line.split('env_prefix="', 1)[1].split('"', 1)[0]
    return prefix, names, secrets


def names_of(module: str, cls: str) -> set[str]:
    try:
        prefix, names, secrets = declared(module, cls)
    except OSError:
        return _imported(module, cls)
    found = {env_name(n, prefix) for n in names}
    return found | {env_name(n, prefix) + FILE_SUFFIX for n in secrets}


def _imported(module: str, cls: str) -> set[str]:
    import importlib

    declaration = getattr(importlib.import_module(module), cls)
    if hasattr(declaration, "env_names"):  # a settings model
        return set(declaration.env_names())
    from loader.settings import env_names

    return env_names()


def _runner() -> set[str]:
    from loader.runner.options import OPTIONS

    return {o.env for o in OPTIONS} | {TOKEN} | OUTSIDE


def _agent() -> set[str]:
    return names_of(*AGENT)


def _models() -> set[str]:
    return set().union(*(names_of(*m) for m in MODELS))


def _clients() -> set[str]:
    from loader.commands.invocation import CLIENT

    return {o.env for o in CLIENT} | {TOKEN}


LAYERS: tuple[Callable[[], set[str]], ...] = (_runner, _agent, _models, _clients)


def unexplained(names: Iterable[str]) -> list[str]:
    """The names no process reads, asking the declarations only as far as needed."""
    left = set(names)
    for layer in LAYERS:
        if not left:
            break
        left -= layer()
    return sorted(left)


def known() -> frozenset[str]:
    """Every variable any process reads."""
    return frozenset().union(*(layer() for layer in LAYERS))
