"""Who else may touch the store's private files: the master key and the data directory.

The rules are ssh's (``StrictModes``, and its check of a private key): a key file of ours must
have no group or other permission bits, and the data directory must not be writable by group or
others (whoever can write there can swap ``loader.db`` or plant its ``-wal`` file).

One exception, for Kubernetes: a volume the kubelet prepared for the pod's ``fsGroup`` is owned
by root, has the store's own group, and grants that group access (a Secret mounted 0440, a data
volume ``g+rwxs``). Only the store's own user is in that group, so those group bits are
accepted -- only when root owns the path and the store is not root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from loader.errors import ConfigError


def _fs_group_volume(info: os.stat_result, uid: int, gid: int) -> bool:
    return info.st_uid == 0 and uid != 0 and info.st_gid == gid


def _who(bits: int) -> str:
    who = [name for name, mask in (("group", 0o070), ("others", 0o007)) if bits & mask]
    return " and ".join(who)


def key_file_problem(info: os.stat_result, uid: int, gid: int) -> str | None:
    """Why a key file with this ``stat`` is too open (None when it is private enough)."""
    mode = stat.S_IMODE(info.st_mode)
    allowed = 0o040 if _fs_group_volume(info, uid, gid) else 0
    loose = mode & 0o077 & ~allowed
    if not loose:
        return None
    verb = "writable" if loose & 0o022 else "readable" if loose & 0o044 else "accessible"
    return f"is {verb} by {_who(loose)} (mode {mode:04o}); chmod 600 it"


def data_dir_problem(info: os.stat_result, uid: int, gid: int) -> str | None:
    """Why a data directory with this ``stat`` is too open (None when it is not)."""
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o022:
        return None
    if _fs_group_volume(info, uid, gid) and mode & stat.S_ISGID:
        return None
    return f"is writable by {_who(mode & 0o022)} (mode {mode:04o}); chmod 700 it"


def check_key_file(path: Path, info: os.stat_result) -> None:
    problem = key_file_problem(info, os.geteuid(), os.getegid())
    if problem:
        raise ConfigError(f"master key file {path} {problem}")


def check_data_dir(path: Path) -> None:
    """Refuse a data directory others could write to (a missing one is created elsewhere)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot read data directory {path}: {exc.strerror}") from None
    problem = data_dir_problem(info, os.geteuid(), os.getegid())
    if problem:
        raise ConfigError(f"data directory {path} {problem}")
