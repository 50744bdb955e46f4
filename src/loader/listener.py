"""Listening sockets, bound before anything else starts.

The store, the agent and the webhook bind their address first (then open databases, follow the
store, start tasks) and hand the socket to aiohttp's ``SockSite``: an address in use is one line
naming it and exit 69, the same in every command, before the process has done anything else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from loader.errors import AddressInUseError, ConfigError


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_tcp(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one)."""
    where = _where(host, port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {where}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _bind_error(where, exc) from None
    sock.setblocking(False)
    return sock


def bind_unix(path: Path, backlog: int = 1024) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600 from the start (a stale socket file from
    an earlier run is replaced; any other file is not)."""
    where = f"unix:{path}"
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            pass  # nobody answers: a stale socket
        else:
            raise AddressInUseError(f"cannot listen on {where}: another process serves it")
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _bind_error(where, exc) from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.setblocking(False)
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def listen_url(sock: socket.socket, host: str, scheme: str = "http") -> str:
    """Where a listening socket answers: ``unix:/path``, or ``scheme://host:port`` with the host
    as configured and the port as bound."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    return f"{scheme}://{_where(host, bound_port(sock))}"


def _bind_error(where: str, exc: OSError) -> Exception:
    if exc.errno == errno.EADDRINUSE:
        return AddressInUseError(
            f"cannot listen on {where}: the address is already in use (is another loader "
            "running? pick another port)"
        )
    return ConfigError(f"cannot listen on {where}: {exc.strerror or exc}")
