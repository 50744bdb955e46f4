"""Warn about ``LOADER_*`` variables loader does not read (``LOADER_ENV=prod`` is a typo of
``LOADER_ENVIRONMENT``, silently ignored otherwise), naming the closest known one.

Stdlib only and cheap (``loader run`` calls it on its exec path). The names come from where each
process declares its settings (:mod:`loader.settingnames`), asked cheapest first and only while
a variable is left unexplained; ``difflib`` and the rest of the names are loaded only for an
unknown one.
"""

from __future__ import annotations

import os
import sys

from loader.settingtypes import PREFIX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


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
    found = [k for k in environ if k.startswith(PREFIX) and not is_service_link(k)]
    if not found:
        return []
    from loader.settingnames import known, unexplained

    left = unexplained(found)
    if not left:
        return []
    import difflib

    names = known()
    out: list[tuple[str, str | None]] = []
    for name in left:
        # LOADER_ENV -> LOADER_ENVIRONMENT: a known name it begins is the best hint; then the
        # closest spelling of the part after LOADER_ (the shared prefix says nothing).
        close = sorted((k for k in names if k.startswith(name)), key=lambda k: (len(k), k))[:1]
        if not close:
            tails = {k.removeprefix(PREFIX): k for k in sorted(names)}
            match = difflib.get_close_matches(name.removeprefix(PREFIX), tails, 1, 0.6)
            close = [tails[m] for m in match]
        out.append((name, close[0] if close else None))
    return out


def warn_unknown(environ: Mapping[str, str] | None = None) -> None:
    for name, close in unknown(os.environ if environ is None else environ):
        hint = f" (did you mean {close}?)" if close else ""
        print(f"loader: warning: {name} is not a loader setting; ignored{hint}", file=sys.stderr)
