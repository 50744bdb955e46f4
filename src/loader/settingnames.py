"""Every ``LOADER_*`` variable some loader process reads, derived from where each process
declares its settings (never a list of its own).

The declarations are asked cheapest first and only while a variable is left unexplained: on
``loader run``'s exec path a variable of its own costs nothing, one of the agent's costs the
agent's table (stdlib), and only a store or webhook variable (or a typo) loads their pydantic
models. The agent therefore never loads pydantic for a variable of its own either.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Read outside every settings table: the container image's HEALTHCHECK (see the Dockerfile).
OUTSIDE = frozenset({"LOADER_HEALTHCHECK_URL"})


def _runner() -> set[str]:
    from loader.runner.options import OPTIONS
    from loader.settingtypes import TOKEN

    return {o.env for o in OPTIONS} | {TOKEN} | OUTSIDE


def _agent() -> set[str]:
    from loader.settings import env_names

    return env_names()


def _clients() -> set[str]:
    from loader.commands.common import CLIENT
    from loader.settingtypes import TOKEN

    return {o.env for o in CLIENT} | {TOKEN}


def _models() -> set[str]:
    from loader.server.settings import StoreSettings
    from loader.webhook.settings import WebhookSettings

    return StoreSettings.env_names() | WebhookSettings.env_names()


LAYERS: tuple[Callable[[], set[str]], ...] = (_runner, _agent, _clients, _models)


def unexplained(names: Iterable[str]) -> list[str]:
    """The names no process reads, asking the declarations only as far as needed."""
    left = set(names)
    for layer in LAYERS:
        if not left:
            break
        left -= layer()
    return sorted(left)


def known() -> frozenset[str]:
    """Every variable any process reads (loads every declaration, pydantic's too)."""
    return frozenset().union(*(layer() for layer in LAYERS))
