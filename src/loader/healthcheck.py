"""The container image's HEALTHCHECK: ``python -m loader.healthcheck [PID]`` exits 0 when the
process the container runs (PID 1 by default) answers its health endpoint, whatever its role.
Stdlib only; one line on stderr when it fails.

The URL is ``LOADER_HEALTHCHECK_URL`` when set, else read from that process's command line and
environment (``/proc/PID/cmdline`` and ``environ``), flags first as the process reads them:

- ``store serve``: ``/v1/health`` on ``--listen`` / ``LOADER_LISTEN`` (default 127.0.0.1:8700),
  https with ``--tls-cert`` / ``LOADER_TLS_CERT``;
- ``webhook``: ``/healthz`` on ``--listen`` / ``LOADER_WEBHOOK_LISTEN`` (0.0.0.0:8443), https
  unless ``--insecure``;
- anything else (``agent``, the image's usual role): the agent's ``/healthz`` on ``--listen`` /
  ``LOADER_LISTEN`` (127.0.0.1:8701).

A wildcard address is probed on loopback; the certificate is not verified (it names a Service,
not 127.0.0.1). An endpoint on a unix socket is not probed (exit 0: nothing to ask over TCP).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

URL = "LOADER_HEALTHCHECK_URL"


def _flag(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _url(scheme: str, listen: str, path: str) -> str | None:
    if listen.startswith("unix:"):
        return None
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{scheme}://{host}:{port}{path}"


def url_for(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """What to probe for a process run as ``argv`` with ``environ``; ``None``: nothing over TCP."""
    if environ.get(URL):
        return environ[URL]
    words = set(argv)
    if {"store", "serve"} <= words:
        listen = _flag(argv, "--listen") or environ.get("LOADER_LISTEN") or "127.0.0.1:8700"
        tls = _flag(argv, "--tls-cert") or environ.get("LOADER_TLS_CERT")
        return _url("https" if tls else "http", listen, "/v1/health")
    if "webhook" in words:
        listen = _flag(argv, "--listen") or environ.get("LOADER_WEBHOOK_LISTEN") or "0.0.0.0:8443"
        insecure = "--insecure" in words or environ.get("LOADER_WEBHOOK_INSECURE", "").lower() in (
            "1",
            "true",
            "yes",
            "on",
        )
        return _url("http" if insecure else "https", listen, "/healthz")
    listen = _flag(argv, "--listen") or environ.get("LOADER_LISTEN") or "127.0.0.1:8701"
    return _url("http", listen, "/healthz")


def _read(path: str) -> list[str]:
    with open(path, "rb") as f:
        return [part.decode("utf-8", "replace") for part in f.read().split(b"\0") if part]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pid = args[0] if args else "1"
    try:
        cmdline = _read(f"/proc/{pid}/cmdline")
    except OSError as exc:
        print(f"healthcheck: cannot read process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        environ = dict(v.split("=", 1) for v in _read(f"/proc/{pid}/environ") if "=" in v)
    except OSError:
        environ = dict(os.environ)
    if os.environ.get(URL):
        environ[URL] = os.environ[URL]
    url = url_for(cmdline, environ)
    if url is None:
        return 0
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=context):  # noqa: S310 - our URL
            return 0
    except Exception as exc:  # any failure is "unhealthy", said in one line
        print(f"healthcheck: {url}: {type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
