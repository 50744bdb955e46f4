"""The real docker CLI's ``--env-file`` parser, reached without a docker engine.

``docker create --env-file F... IMAGE`` parses the files in the CLI, then posts the container's
``Env`` to the daemon: a tiny fake daemon on a unix socket answers ``/_ping`` and records that
request. Used to check the oracle (:mod:`tests.readers.docker`) where a docker CLI is installed;
CI has none (no docker engine package), so the oracle is what CI's matrix reads with.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path


class _Daemon(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    created: list[list[str]]

    def log_message(self, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Api-Version", "1.47")
        self.send_header("OSType", "linux")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._send(200)

    def do_GET(self) -> None:
        self._send(200, b"OK")

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "/containers/create" not in self.path:
            self._send(404, b'{"message": "not here"}')
            return
        self.created.append(json.loads(data).get("Env") or [])
        self._send(201, b'{"Id": "0123456789ab", "Warnings": []}')


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def available() -> bool:
    return shutil.which("docker") is not None


def read_env_files(files: Sequence[Path]) -> list[tuple[str, str]] | str:
    """The ``NAME=value`` pairs docker would give the container, or docker's error message."""
    with tempfile.TemporaryDirectory(prefix="fake-dockerd-") as tmp:
        handler = type("Daemon", (_Daemon,), {"created": []})
        server = _Server(os.path.join(tmp, "d.sock"), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            env = {"PATH": os.environ["PATH"], "HOME": tmp, "DOCKER_HOST": f"unix://{tmp}/d.sock"}
            argv = ["docker", "create", *(f"--env-file={f}" for f in files), "busybox"]
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=30, check=False
            )
        finally:
            server.shutdown()
            server.server_close()
        if proc.returncode:
            return proc.stderr.strip()
        (created,) = handler.created
        return [tuple(entry.split("=", 1)) for entry in created]  # type: ignore[misc]
