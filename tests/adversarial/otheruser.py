"""Another local user, and processes without privilege: the attackers of the shared-directory,
socket and ``/proc`` tests.

The suite runs as root (CI does). A second uid (``nobody``) plants files and binds sockets for
real. "Another process of the same uid" is a root process stripped of every capability (what an
ordinary process of a user has over that user's other processes); the processes under test run
stripped too, so nothing they do relies on root's privileges, and with core dumps allowed
(``ulimit -c unlimited``), so only their own hardening can stop one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

OTHER = pwd.getpwnam("nobody")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acting as a second uid needs root (and util-linux setpriv)",
)

# An ordinary process of this uid: no capabilities at all.
UNPRIVILEGED = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


def dumping(cwd: Path) -> list[str]:
    """An ordinary process of this uid, in ``cwd``, that may dump core as far as its limits go."""
    return [*UNPRIVILEGED, "sh", "-c", f'cd "{cwd}" && ulimit -c unlimited && exec "$@"', "sh"]


def as_other(script: str) -> None:
    """Run a shell script as the other uid (to plant files where it may write)."""
    subprocess.run(
        ["sh", "-c", script],
        user=OTHER.pw_uid,
        group=OTHER.pw_gid,
        extra_groups=[],
        cwd="/",
        check=True,
        timeout=30,
    )


def read_as_same_uid(path: str) -> subprocess.CompletedProcess[bytes]:
    """``cat path`` from an ordinary process of this uid."""
    return subprocess.run(
        [*UNPRIVILEGED, "cat", path], capture_output=True, timeout=30, check=False
    )


@contextmanager
def shared_dir(mode: int) -> Iterator[Path]:
    """A directory on tmpfs, owned by root, with ``mode`` (0o1777 is /dev/shm's own)."""
    path = Path(tempfile.mkdtemp(prefix="loader-shared-", dir="/dev/shm"))
    path.chmod(mode)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def impostor(path: Path, response: bytes) -> Iterator[int]:
    """A unix socket at ``path`` bound by the other uid, answering every connection with
    ``response``. (A forked child: the other uid cannot read this interpreter's files, so it
    only makes system calls on modules already loaded.)"""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(OTHER.pw_gid)
            os.setuid(OTHER.pw_uid)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(path))
            server.listen(16)
            os.write(ready_w, b"1")
            while True:
                conn, _ = server.accept()
                try:
                    conn.recv(65536)
                    conn.sendall(response)
                except OSError:
                    pass  # the client hung up on seeing who we are
                conn.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1", "the impostor could not bind"
        yield pid
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
