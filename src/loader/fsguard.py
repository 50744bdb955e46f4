"""Files and directories another user could have planted or can change: refused, not trusted.

One rule for every path through which secrets, tokens or templates travel: the agent's outputs
and its unix socket, the template, ``loader run --from-file``, and every token file (the
agent's, ``loader run``'s and the management commands', all read by :func:`read_token_file`).
Each refusal is a :class:`~loader.errors.ConfigError` (exit 78): one line naming the path and
the reason.

* A **directory** must be owned by this user or root, and writable by no one else, unless it is
  sticky (``/dev/shm``, ``/tmp``, a Kubernetes memory ``emptyDir``: there no one may remove or
  rename another user's file) or on a read-only mount (Kubernetes ConfigMap and Secret volumes
  look world-writable but are mounted read-only). A group-writable directory is fine when the
  group is its owner's own (ssh's rule).
* A file we **write** over must be a regular file owned by this user; a symbolic link there is
  refused (it could point at ``/dev/zero`` or at another user's file).
* A file we **read** must be a regular file (a FIFO would block, a device never end) owned by
  this user or root and writable by no one else, and a symbolic link to it must be this user's
  or root's (Kubernetes' ``..data`` links). Reads are bounded.

Stdlib basics only: ``loader run`` reads through this on its exec path.
"""

from __future__ import annotations

import os
import stat
import sys

from loader.errors import AddressInUseError, ConfigError, shown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    StrPath = str | Path

# Large enough for thousands of secrets; small enough that a hostile file cannot exhaust memory.
MAX_DATA_FILE = 64 * 1024 * 1024
MAX_TOKEN_FILE = 64 * 1024

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def refuse(path: StrPath, reason: str) -> ConfigError:
    return ConfigError(f"{path}: {reason}; refusing to use it")


def trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _owner_problem(st: os.stat_result, *, root_ok: bool) -> str | None:
    me = os.geteuid()
    if st.st_uid == me or (root_ok and st.st_uid == 0):
        return None
    whom = f"this user (uid {me}) or root" if root_ok and me != 0 else f"this user (uid {me})"
    return f"owned by uid {st.st_uid}, not by {whom}"


def _group_is_owners_own(st: os.stat_result) -> bool:
    """ssh's rule: a group-writable path is safe when its group holds its owner alone."""
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(st.st_uid)
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return False
    return owner.pw_gid == st.st_gid and set(group.gr_mem) <= {owner.pw_name}


def others_can_write(st: os.stat_result) -> bool:
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _group_is_owners_own(st)


def directory_problem(st: os.stat_result, read_only_mount: bool) -> str | None:
    """Why a directory is unsafe to hold or to read secrets from (pure but for name lookups)."""
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    owner = _owner_problem(st, root_ok=True)
    if owner is not None:
        return owner
    if others_can_write(st) and not st.st_mode & stat.S_ISVTX and not read_only_mount:
        return "writable by other users and not sticky (chmod go-w, or +t)"
    return None


def check_directory(directory: StrPath) -> None:
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise refuse(directory, "the directory does not exist") from None
    except OSError as exc:
        raise refuse(directory, f"cannot inspect the directory: {exc.strerror}") from None
    problem = directory_problem(st, _read_only_mount(directory, st))
    if problem is not None:
        raise refuse(directory, f"the directory is {problem}")


def _read_only_mount(directory: StrPath, st: os.stat_result) -> bool:
    if not others_can_write(st):
        return False  # not needed: skip the statvfs call
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _own_existing(path: StrPath, is_kind: Callable[[int], bool], kind: str) -> bool:
    """Whether anything is at ``path`` (not followed); if so, it must be our own ``kind``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not is_kind(st.st_mode):
        raise refuse(path, f"it exists and is {_kind(st.st_mode)}, not {kind}")
    problem = _owner_problem(st, root_ok=False)
    if problem is not None:
        raise refuse(path, f"it exists and is {problem}")
    return True


def check_output(path: StrPath) -> bool:
    """A path we are about to write over: absent (False) or our own regular file (True)."""
    return _own_existing(path, stat.S_ISREG, "a regular file")


def read_output(path: StrPath, limit: int = MAX_DATA_FILE) -> bytes | None:
    """The current bytes of one of our outputs (None when absent, or too large to compare)."""
    if not check_output(path):
        return None
    data = _read(path, os.O_NOFOLLOW, limit + 1, root_ok=False)
    return data if len(data) <= limit else None


def read_trusted(path: StrPath, limit: int = MAX_DATA_FILE) -> bytes:
    """A file whose content we act on (an env file, a token, a template), checked as above.

    Raises ``FileNotFoundError`` when it is absent (callers word that themselves).
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        problem = _owner_problem(st, root_ok=True)
        if problem is not None:
            raise refuse(path, f"it is a symbolic link {problem}")
    check_directory(os.path.dirname(os.path.abspath(path)))
    data = _read(path, 0, limit + 1, root_ok=True)
    if len(data) > limit:
        raise refuse(path, f"it is larger than {limit // 1024} KiB")
    return data


def read_token_file(path: StrPath) -> str:
    """The bearer token in a file (``LOADER_TOKEN_FILE``, ``--token-file``; a Kubernetes
    projected token), read as :func:`read_trusted` reads: every command reads a token file
    here. Missing, unreadable, refused or empty is one line (exit 78) that shows the path only
    when it does not look like a token itself."""
    try:
        token = read_trusted(path, MAX_TOKEN_FILE).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {shown(path)}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"token file {shown(path)} is empty")
    return token


def _read(path: StrPath, flags: int, limit: int, *, root_ok: bool) -> bytes:
    """Open without blocking (a FIFO), check what was opened, read at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | flags)
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            raise refuse(path, "it is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, f"it is {_kind(st.st_mode)}")
        problem = _owner_problem(st, root_ok=root_ok)
        if problem is not None:
            raise refuse(path, f"it is {problem}")
        if root_ok and others_can_write(st):
            raise refuse(path, "it is writable by other users")
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_socket_path(path: StrPath) -> bool:
    """Before binding a unix socket: the directory is safe, and what is there already (True:
    a socket of ours, stale) may be replaced. Another user's socket, or any other file, is
    refused; so is a socket of ours that still answers (another agent serves there)."""
    check_directory(os.path.dirname(os.path.abspath(path)))
    if not _own_existing(path, stat.S_ISSOCK, "a socket"):
        return False
    if _answers(path):
        raise AddressInUseError(f"cannot listen on unix:{path}: another process serves it")
    return True


def _answers(path: StrPath) -> bool:
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def peer_uid(sock: Any) -> int:
    """The uid of the process at the other end of a connected unix socket (``SO_PEERCRED``)."""
    import _socket

    raw: bytes = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(raw[4:8], sys.byteorder)  # struct ucred {pid, uid, gid}


def check_peer(sock: Any, where: str) -> None:
    """Talk over a unix socket only to a server running as this user or root."""
    uid = peer_uid(sock)
    if not trusted_owner(uid):
        raise refuse(
            where,
            f"the process serving it runs as uid {uid}, not as this user (uid {os.geteuid()}) "
            "or root",
        )
