"""The real readers each env file format is proven against.

* shell  -- bash: ``set -a; . FILE``
* dotenv -- python-dotenv (``dotenv_values``, default interpolation) and ``dotenv-rust`` (Debian's
  ``dotenv`` package: the Rust dotenv crate the Spice runtime's dotenvy was forked from)
* docker -- docker's env-file rule, transcribed from docker/cli ``opts/file.go``
  (``parseKeyValueFile``): lines split like Go's ``bufio.ScanLines`` (a trailing CR dropped,
  64 KiB max), leading whitespace trimmed, ``#`` comments, value raw after the first ``=``.
* json   -- ``json.load``
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

_DUMP_ENV = (
    f"{sys.executable} -c 'import os,json,sys; sys.stdout.write(json.dumps(dict(os.environ)))'"
)
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}


def read_bash(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f'set -a; . "$1"; exec {_DUMP_ENV}', "bash", str(path)],
        env=CLEAN_ENV,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def read_python_dotenv(path: Path) -> dict[str, str | None]:
    return dict(dotenv_values(path))


def dotenv_rust_available() -> bool:
    return shutil.which("dotenv-rust") is not None


def read_dotenv_rust(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dotenv-rust", "-f", str(path), "sh", "-c", f"exec {_DUMP_ENV}"],
        env=CLEAN_ENV,
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"dotenv-rust refused the file: {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout)


def read_docker_env_file(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    values: dict[str, str] = {}
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > 64 * 1024:
            raise ValueError("bufio.Scanner: token too long")
        text = raw.decode("utf-8")  # docker refuses invalid UTF-8
        if number == 0:
            text = text.removeprefix("\ufeff")
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        variable, sep, value = line.partition("=")
        variable = variable.lstrip(" \t")
        if not variable or any(c in variable for c in " \t"):
            raise ValueError("poorly formatted environment")
        if sep:
            values[variable] = value
    return values


def read_json(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8"))
