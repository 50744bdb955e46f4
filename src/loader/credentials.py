"""loader's own credential settings, kept from every process loader starts.

A child of ``loader run`` or an agent's ``--on-change`` command gets none of them: not the
token, not the token file's path (as good as the token, and a way around ``--only``), nothing
that names a key, a secret or a database URL. The runner and the agent also drop them from their
own ``os.environ`` once read. Their initial environment stays in ``/proc/PID/environ``, which
:mod:`loader.hardening` closes to other processes.

Stdlib only: ``loader run`` imports this on its exec path.
"""

from __future__ import annotations

import os

from loader.settingtypes import PREFIX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Credentials without a telling word in their name (a database URL holds its password).
NAMED = frozenset({"LOADER_DATABASE_URL", "LOADER_MASTER_KEY_FILE"})
# Any LOADER_* setting whose name holds one of these is treated as a credential.
MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL", "JWT")


def is_credential(name: str) -> bool:
    upper = name.upper()  # settings are read in any case
    if not upper.startswith(PREFIX):
        return False
    # LOADER_DATABASE_URL_FILE names where the URL is: as good as the URL to a child.
    stem = upper.removesuffix("_FILE")
    return stem in NAMED or upper in NAMED or any(marker in upper for marker in MARKERS)


def without_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not is_credential(k)}


def scrub_environ() -> None:
    """Drop the credential settings from ``os.environ`` (after they were read)."""
    for name in [k for k in os.environ if is_credential(k)]:
        del os.environ[name]
