"""Keep secrets out of core dumps and out of other processes' reach through ``/proc``.

The store (master key, values), the agent and ``render --once`` (token, values), the webhook
(its TLS key) and the ``loader run --watch``/``--mask`` supervisor (token, values) call
:func:`harden_process` first thing: ``PR_SET_DUMPABLE`` 0 (no core dump; ``/proc/PID/environ``,
``mem`` and ``fd`` closed to other processes of the same uid, ptrace refused) and
``RLIMIT_CORE`` 0. ``loader run`` in exec mode needs neither: the process becomes the app.

A dumpable flag of 0 is reset by ``execve``, so the processes loader starts (the app, an
``--on-change`` command) are unaffected; the supervisor gives its child back the core size limit
it had.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import sys

from loader.errors import ConfigError

PR_SET_DUMPABLE = 4

_saved_core_limit: tuple[int, int] | None = None


def harden_process(*, keep_hard_core_limit: bool = False) -> None:
    """No core dumps, no ``/proc`` access by others. ``keep_hard_core_limit`` leaves the hard
    limit alone so a child can get its old soft limit back (see :func:`restore_core_limit`)."""
    global _saved_core_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    _saved_core_limit = (soft, hard)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard if keep_hard_core_limit else 0))
    if not sys.platform.startswith("linux"):
        return  # prctl is Linux's; the core limit above is all there is elsewhere
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise ConfigError(f"cannot mark the process non-dumpable: errno {ctypes.get_errno()}")


def restore_core_limit() -> None:
    """In a child before ``exec``: the core size limit the parent had before hardening."""
    if _saved_core_limit is not None:
        soft = _saved_core_limit[0]
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        with contextlib.suppress(ValueError, OSError):  # the hard limit was lowered too
            resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
