"""File output: atomic writes and the tmpfs check.

:func:`atomic_write` writes ``.<name>.tmp.<random>`` in the target's directory (mode set at
``open``, so the bytes are never readable by others), fsyncs it, renames it over the target and
fsyncs the directory; on any error the temp file is removed and the target is untouched.

A rename alone is a *name* event to a file watcher, which some watchers do not count (the
Spice runtime v1.0's pods watcher counts create, delete and data-modify only). So once the new
file is in place, its first byte is written again, through the descriptor that wrote it: the
same byte, so every reader still sees either the old file or the whole new one, and the kernel
reports a data-modify (``IN_MODIFY``) on the target's name that every watcher counts
(``tests/integration/test_watcher_events.py`` lists the events of each way to write).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
from pathlib import Path

from loader.errors import ConfigError
from loader.fsguard import check_directory

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
MEMORY_FILESYSTEMS = {TMPFS_MAGIC: "tmpfs", RAMFS_MAGIC: "ramfs"}


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    directory = path.parent
    tmp = directory / f".{path.name}.tmp.{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            os.replace(tmp, path)
            _touch_data(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def _touch_data(fd: int, data: bytes) -> None:
    """A data-modify event on the renamed file without changing a byte (see the module doc)."""
    if data:
        os.pwrite(fd, data[:1], 0)
    else:
        os.ftruncate(fd, 0)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StatFs(ctypes.Structure):
    # struct statfs on 64-bit Linux; only f_type is read.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_libc: ctypes.CDLL | None = None


def filesystem_type(path: Path) -> int:
    """``statfs(2)``'s ``f_type`` for ``path`` (or its nearest existing parent)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    buf = _StatFs()
    if _libc.statfs(os.fsencode(probe), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(probe))
    return int(buf.f_type) & 0xFFFFFFFF


def is_memory_backed(path: Path) -> bool:
    return filesystem_type(path) in MEMORY_FILESYSTEMS


def check_secret_target(path: Path, allow_disk: bool) -> None:
    """Refuse to put secrets on a disk-backed filesystem unless told it is fine.

    Also checks the directory exists, is safe from other users (:mod:`loader.fsguard`) and is
    writable, so a bad path fails at start-up.
    """
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"output directory {directory} does not exist")
    check_directory(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {directory} is not writable")
    if allow_disk:
        return
    try:
        memory = is_memory_backed(directory)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            memory = False
        else:
            raise ConfigError(f"cannot inspect the filesystem of {directory}: {exc}") from None
    if not memory:
        raise ConfigError(
            f"{path} is not on tmpfs/ramfs: secrets are only written to memory-backed "
            "filesystems (mount an emptyDir with medium: Memory, use /dev/shm or "
            "$XDG_RUNTIME_DIR, or set LOADER_ALLOW_DISK=true)"
        )
