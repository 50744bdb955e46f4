"""Reload or restart: where each secret reaches the Spice runtime, and what a change needs (pure).

The Spice runtime's pods watcher (``--pods-watcher-enabled``, which ``spice run`` passes)
re-reads the spicepod on a change and re-initialises the datasets, models and catalogs that
changed. Everything else it reads once, at start-up: its secret stores and their params, its
runtime settings, its environment and ``.env`` files (see ``docs/spice.md``). So:

* a secret that reaches the runtime **only** through dataset, model or catalog params in a
  spicepod is applied by rewriting the spicepod: no restart;
* a secret that reaches it any other way (a ``secrets:`` store's params, ``runtime:``, another
  spicepod section, the environment, an env file, a file that is not a spicepod) needs a
  restart (``loader run --watch``) or the agent's ``--on-change``.

:func:`routes` reads one template to know which names reach which part; :func:`decide` turns a
change (names only: values never enter this module) and a policy (``auto``, ``always``,
``never``) into a :class:`Decision` whose ``line`` is logged. Stdlib only at import time
(``loader run --watch`` decides with it); YAML is read only when a template is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loader.settingtypes import RESTART_POLICIES

POLICIES = RESTART_POLICIES
# Spicepod sections whose entries a pods-watcher reload re-initialises.
RELOADED = {"datasets": "dataset params", "models": "model params", "catalogs": "catalog params"}
RESTARTED = {"secrets": "secret store params", "runtime": "runtime settings"}


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One way a secret reaches the runtime: ``part`` (``dataset params``), ``where`` (a
    file, or ``the environment``), and whether a reload applies a change there."""

    part: str
    where: str
    reloads: bool

    def __str__(self) -> str:
        return f"{self.part} in {self.where}" if self.where else self.part


Routes = frozenset[Route]
Feeds = dict[str, Routes]


def routes(text: str, kind: str, spelling: str, where: str) -> Feeds:
    """Which secret (by name) reaches which part of the runtime through this template, which
    renders to ``where``. A template that does not parse, or is not a spicepod, is one file
    whose changes need a restart."""
    return dict(_routes(text, kind, spelling, where))


@functools.lru_cache(maxsize=32)
def _routes(
    text: str, kind: str, spelling: str, where: str
) -> tuple[tuple[str, frozenset[Route]], ...]:
    from loader import template  # YAML: only for a process that renders templates

    pattern = template.loader_references(text, spelling)
    found: dict[str, set[Route]] = {}

    def add(names: Iterable[str], route: Route) -> None:
        for name in names:
            found.setdefault(name, set()).add(route)

    documents = _documents(text, kind)
    if documents is None or not all(_is_spicepod(doc) for doc in documents):
        add(template.names_in(text, pattern), Route("a file that is not a spicepod", where, False))
    else:
        for doc in documents:
            for key, value in doc.items():
                section = str(key)
                part = RELOADED.get(section) or RESTARTED.get(section) or f"spicepod {section}"
                names = [n for s in _strings(key, value) for n in template.names_in(s, pattern)]
                add(names, Route(part, where, section in RELOADED))
    return tuple((name, frozenset(r)) for name, r in sorted(found.items()))


def _documents(text: str, kind: str) -> list[Any] | None:
    import json

    import yaml

    try:
        if kind == "json":
            return [json.loads(text)]
        if kind == "yaml":
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except (ValueError, yaml.YAMLError):
        return None
    return None


def _is_spicepod(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("kind", "")).lower() == "spicepod"


def _strings(*items: Any) -> Iterable[str]:
    for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from _strings(*item.keys(), *item.values())
        elif isinstance(item, list):
            yield from _strings(*item)


def environment(names: Iterable[str], where: str = "") -> Feeds:
    """Secrets that reach the runtime through its environment (or an env file, ``where``)."""
    route = Route("an env file" if where else "the environment", where, False)
    return {name: frozenset({route}) for name in names}


def merge(*feeds: Mapping[str, frozenset[Route]]) -> Feeds:
    out: dict[str, frozenset[Route]] = {}
    for one in feeds:
        for name, found in one.items():
            out[name] = out.get(name, frozenset()) | found
    return out


def changed_names(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Names added, removed or given another value (the values themselves stay here)."""
    return sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "restart", "reload" (rewrite only) or "none"
    names: tuple[str, ...]
    reason: str

    @property
    def restart(self) -> bool:
        return self.action == "restart"

    @property
    def line(self) -> str:
        verb = {"restart": "restart", "reload": "rewrite only, no restart", "none": "no action"}
        return f"{verb[self.action]}: {self.reason}"


def decide(changed: Iterable[str], feeds: Mapping[str, frozenset[Route]], policy: str) -> Decision:
    """What a change of ``changed`` needs, given where each name goes (see the module doc)."""
    names = tuple(sorted(set(changed)))
    listed = ", ".join(names)
    if policy == "never":
        return Decision("reload", names, f"{listed} changed; files only (restart policy never)")
    if policy == "always":
        return Decision("restart", names, f"{listed} changed (restart policy always)")
    used = [n for n in names if feeds.get(n)]
    if not used:
        return Decision("none", names, f"{listed} changed but reach no output")
    needs = {n: sorted(r for r in feeds[n] if not r.reloads) for n in used}
    restart = {n: found for n, found in needs.items() if found}
    if restart:
        reached = "; ".join(
            f"{n} reaches {', '.join(str(r) for r in found)}" for n, found in restart.items()
        )
        return Decision(
            "restart", names, f"{reached} (read once at start-up: a reload does not apply it)"
        )
    parts = sorted({r.part for n in used for r in feeds[n]})
    return Decision(
        "reload",
        names,
        f"{', '.join(used)} {'reaches' if len(used) == 1 else 'reach'} the runtime only "
        f"through {', '.join(parts)}, which its pods watcher reloads",
    )


def decide_edit(what: str, policy: str) -> Decision:
    """A template's own text changed: anything in it may have, so restart (unless never)."""
    if policy == "never":
        return Decision("reload", (), f"template {what} changed; files only (restart policy never)")
    return Decision("restart", (), f"template {what} changed (any part of it may have)")


def decide_unknown(policy: str) -> Decision:
    """Files rewritten with no record of what they held (the first render after a start)."""
    if policy == "never":
        return Decision("reload", (), "first render; files only (restart policy never)")
    return Decision("restart", (), "first render: what the files held before is not known")
