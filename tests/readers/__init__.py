"""The real readers each env file format is proven against, run in batches.

Every reader reads many files in one process (``read_batch``): the reader matrix
(``tests/readers/matrix.py``) hands each reader every file of its format at once.

* ``dotenv`` -- python-dotenv 1.0.1 and the newest (each in its own venv under ``.tools/``,
  ``dotenv_values`` with interpolation on and off); npm ``dotenv`` 16, 17 and 18 (``parse``) and
  Node's own parser (``util.parseEnv``, ``process.loadEnvFile``, ``node --env-file``); Debian's
  ``dotenv-rust`` (the Rust ``dotenv`` crate the Spice runtime's dotenvy was forked from) and
  ``ruby-dotenv``. ``dotenv-expand`` 11 and 12 (over npm dotenv 16 and 17) read the stricter
  ``dotenv-expand`` format.
* ``shell`` -- bash, dash, busybox sh and zsh: ``set -a; . FILE``, then ``env -0``.
* ``docker`` -- no docker engine here: :mod:`tests.readers.docker` is docker's ``--env-file``
  parser transcribed as a test oracle.
* ``json`` -- Python's ``json`` and Node's ``JSON.parse``.

A reader that is not installed is an error (``ReaderMissingError``), never a skip: ``.ci/run``
installs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from loader import formats
from tests.readers.docker import parse_env_file as _docker_parse

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
NODE_MODULES = TOOLS / "node"
PYTHON_DOTENV_VENVS = {
    "1.0.1": TOOLS / "python-dotenv-1.0.1",
    "latest": TOOLS / "python-dotenv-latest",
}
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
SHELLS = {"bash": ["bash"], "dash": ["dash"], "busybox sh": ["busybox", "sh"], "zsh": ["zsh"]}


class ReaderMissingError(RuntimeError):
    """A reader the matrix needs is not installed (``bash .ci/run`` installs every one)."""


@dataclass(frozen=True)
class Failed:
    """The reader rejected the file (an exception, a non-zero exit)."""

    message: str


# What a reader made of one file: its variables, or a refusal.
Read = dict[str, str | None] | Failed
# reader id -> file -> what it read
Batch = dict[str, dict[Path, Read]]


@dataclass(frozen=True)
class Reader:
    id: str  # shown in the README matrix
    # dotenv readers: the loader.formats reader families whose misreads this reader has
    families: tuple[str, ...] = ()


_PY, _NPM, _NODE = formats.PYTHON_DOTENV, formats.NPM_DOTENV, formats.NODE
DOTENV_READERS = (
    Reader("python-dotenv 1.0.1", (_PY,)),
    Reader("python-dotenv 1.0.1 interpolate=False", (_PY,)),
    Reader("python-dotenv latest", (_PY,)),
    Reader("python-dotenv latest interpolate=False", (_PY,)),
    Reader("npm dotenv 16", (_NPM,)),
    Reader("npm dotenv 17", (_NPM,)),
    Reader("npm dotenv 18", (_NPM,)),
    Reader("Node util.parseEnv", (_NODE,)),
    Reader("Node process.loadEnvFile", (_NODE,)),
    Reader("node --env-file", (_NODE,)),
    Reader("dotenv-rust (Debian)", (formats.DOTENV_RUST,)),
    Reader("ruby dotenv (Debian)", (formats.RUBY_DOTENV,)),
)
EXPAND_READERS = (
    Reader("npm dotenv 16 + dotenv-expand 11", (_NPM, formats.DOTENV_EXPAND)),
    Reader("npm dotenv 17 + dotenv-expand 12", (_NPM, formats.DOTENV_EXPAND)),
)
SHELL_READERS = tuple(Reader(name) for name in SHELLS)
DOCKER_READERS = (Reader("docker --env-file (oracle)"),)
JSON_READERS = (Reader("Python json"), Reader("Node JSON.parse"))
FORMAT_READERS = {
    "dotenv": DOTENV_READERS,
    "dotenv-expand": DOTENV_READERS + EXPAND_READERS,
    "shell": SHELL_READERS,
    "docker": DOCKER_READERS,
    "json": JSON_READERS,
}
ALL_READERS = DOTENV_READERS + EXPAND_READERS + SHELL_READERS + DOCKER_READERS + JSON_READERS

_NODE_IDS = {
    "npm dotenv 16": "dotenv16",
    "npm dotenv 17": "dotenv17",
    "npm dotenv 18": "dotenv18",
    "npm dotenv 16 + dotenv-expand 11": "dotenv16+expand11",
    "npm dotenv 17 + dotenv-expand 12": "dotenv17+expand12",
    "Node util.parseEnv": "util.parseEnv",
    "Node process.loadEnvFile": "process.loadEnvFile",
    "Node JSON.parse": "json",
}


def _need(program: str) -> str:
    found = shutil.which(program, path=CLEAN_ENV["PATH"])
    if found is None:
        raise ReaderMissingError(f"{program} is not installed (bash .ci/run installs it)")
    return found


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), env=CLEAN_ENV, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def _json_results(raw: dict[str, dict[str, object]]) -> dict[Path, Read]:
    out: dict[Path, Read] = {}
    for file, result in raw.items():
        if "error" in result:
            out[Path(file)] = Failed(str(result["error"]))
        else:
            out[Path(file)] = result["values"]  # type: ignore[assignment]
    return out


def _python_dotenv(files: Sequence[Path]) -> Batch:
    batch: Batch = {}
    for label, venv in PYTHON_DOTENV_VENVS.items():
        python = venv / "bin" / "python"
        if not python.exists():
            raise ReaderMissingError(f"{python} is missing (bash .ci/run creates it)")
        proc = _run([str(python), str(HERE / "python_dotenv.py"), *map(str, files)])
        if proc.returncode:
            raise RuntimeError(f"python-dotenv {label} reader failed: {proc.stderr.decode()}")
        data = json.loads(proc.stdout)
        batch[f"python-dotenv {label}"] = _json_results(data["on"])
        batch[f"python-dotenv {label} interpolate=False"] = _json_results(data["off"])
    return batch


def _node(reader_ids: Sequence[str], files: Sequence[Path]) -> Batch:
    node = _need("node")
    if not (NODE_MODULES / "node_modules").is_dir():
        raise ReaderMissingError(f"{NODE_MODULES}/node_modules is missing (bash .ci/run)")
    names = [_NODE_IDS[r] for r in reader_ids]
    script = str(HERE / "node_readers.js")
    proc = _run([node, script, str(NODE_MODULES), ",".join(names), *map(str, files)])
    if proc.returncode:
        raise RuntimeError(f"node readers failed: {proc.stderr.decode()}")
    data = json.loads(proc.stdout)
    return {r: _json_results(data[_NODE_IDS[r]]) for r in reader_ids}


def _env_diff(env: dict[str, str], baseline: dict[str, str]) -> dict[str, str | None]:
    return {k: v for k, v in env.items() if k not in baseline}


def _node_env_file(files: Sequence[Path], expected: Callable[[Path], set[str]]) -> Batch:
    """``node --env-file=F`` for many files in one process (Node parses each file on its own).

    Each file's variables are told apart by name, so names must not repeat across files. A
    variable no file declares comes from a misread: the group is split in halves until the file
    that produced it is alone, and that file's result then shows it.
    """
    node = _need("node")
    dump = ["-e", "process.stdout.write(JSON.stringify(process.env))"]
    baseline = json.loads(_run([node, *dump]).stdout)

    def group(part: Sequence[Path]) -> dict[Path, Read]:
        proc = _run([node, *(f"--env-file={f}" for f in part), *dump])
        if proc.returncode:
            if len(part) == 1:
                return {part[0]: Failed(proc.stderr.decode(errors="replace")[:200])}
        else:
            loaded = _env_diff(json.loads(proc.stdout), baseline)
            if len(part) == 1:
                return {part[0]: loaded}
            names = [expected(f) for f in part]
            if set(loaded) <= set().union(*names):
                return {
                    f: {k: v for k, v in loaded.items() if k in n}
                    for f, n in zip(part, names, strict=True)
                }
        half = len(part) // 2
        return group(part[:half]) | group(part[half:])

    return {"node --env-file": group(list(files)) if files else {}}


def _dump_each(prefix: str, files: Sequence[Path]) -> dict[Path, Read]:
    """Run ``PREFIX FILE env -0`` for each file from one ``sh`` loop; read the dumps back."""
    with tempfile.TemporaryDirectory(prefix="readers-") as tmp:
        script = (
            "out=$1; shift; i=0; for f do i=$((i+1)); "
            f'{prefix} >"$out/$i.env" 2>"$out/$i.err"; echo $? >"$out/$i.rc"; done'
        )
        empty = Path(tmp) / "empty"
        empty.write_text("")
        argv = ["sh", "-c", script, "sh", tmp, str(empty), *map(str, files)]
        proc = _run(argv)
        if proc.returncode:
            raise RuntimeError(f"reader loop failed: {proc.stderr.decode()}")

        def dump(i: int) -> Read:
            rc = int((Path(tmp) / f"{i}.rc").read_text())
            if rc:
                err = (Path(tmp) / f"{i}.err").read_text(errors="replace").strip()
                return Failed(f"exit {rc}: {err[:200]}")
            raw = (Path(tmp) / f"{i}.env").read_bytes().decode("utf-8", errors="surrogateescape")
            return dict(entry.split("=", 1) for entry in raw.split("\0") if entry)  # type: ignore[misc]

        baseline = dump(1)
        assert isinstance(baseline, dict), baseline
        out: dict[Path, Read] = {}
        for i, f in enumerate(files, 2):
            got = dump(i)
            out[f] = got if isinstance(got, Failed) else _env_diff(got, baseline)  # type: ignore[arg-type]
        return out


def _shells(files: Sequence[Path]) -> Batch:
    batch: Batch = {}
    for name, argv in SHELLS.items():
        _need(argv[0])
        shell = " ".join(argv)
        batch[name] = _dump_each(f'{shell} -c \'set -a; . "$1"; exec env -0\' sh "$f"', files)
    return batch


def _dotenv_rust(files: Sequence[Path]) -> Batch:
    _need("dotenv-rust")
    return {"dotenv-rust (Debian)": _dump_each('dotenv-rust -f "$f" env -0', files)}


def _ruby(files: Sequence[Path]) -> Batch:
    ruby = _need("ruby")
    proc = _run([ruby, str(HERE / "ruby_dotenv.rb"), *map(str, files)])
    if proc.returncode:
        raise ReaderMissingError(
            f"ruby dotenv reader failed (is ruby-dotenv installed?): {proc.stderr.decode()[:300]}"
        )
    return {"ruby dotenv (Debian)": _json_results(json.loads(proc.stdout))}


def _docker(files: Sequence[Path]) -> Batch:
    out: dict[Path, Read] = {}
    for f in files:
        try:
            out[f] = dict(_docker_parse(f.read_bytes()))
        except ValueError as exc:
            out[f] = Failed(str(exc))
    return {"docker --env-file (oracle)": out}


def _python_json(files: Sequence[Path]) -> Batch:
    return {"Python json": {f: json.loads(f.read_text(encoding="utf-8")) for f in files}}


def read_batch(
    readers: Sequence[Reader], files: Sequence[Path], expected: Callable[[Path], set[str]]
) -> Batch:
    """Every reader in ``readers`` reads every file; ``expected(file)`` names the variables the
    file declares (for readers that load many files into one environment)."""
    ids = {r.id for r in readers}
    batch: Batch = {}
    if ids & {r for r in ids if r.startswith("python-dotenv")}:
        batch.update(_python_dotenv(files))
    node_ids = [r for r in _NODE_IDS if r in ids]
    if node_ids:
        batch.update(_node(node_ids, files))
    if "node --env-file" in ids:
        batch.update(_node_env_file(files, expected))
    if "dotenv-rust (Debian)" in ids:
        batch.update(_dotenv_rust(files))
    if "ruby dotenv (Debian)" in ids:
        batch.update(_ruby(files))
    if ids & set(SHELLS):
        batch.update(_shells(files))
    if "docker --env-file (oracle)" in ids:
        batch.update(_docker(files))
    if "Python json" in ids:
        batch.update(_python_json(files))
    return {r: batch[r] for r in ids}


def versions() -> dict[str, str]:
    """Installed versions of the readers, for the report (not asserted anywhere)."""
    out: dict[str, str] = {}
    for label, venv in PYTHON_DOTENV_VENVS.items():
        proc = _run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('python-dotenv'))",
            ]
        )
        out[f"python-dotenv {label}"] = proc.stdout.decode().strip()
    for alias in ("dotenv16", "dotenv17", "dotenv18", "dotenv-expand11", "dotenv-expand12"):
        pkg = NODE_MODULES / "node_modules" / alias / "package.json"
        if pkg.exists():
            out[alias] = json.loads(pkg.read_text())["version"]
    out["node"] = _run(["node", "--version"]).stdout.decode().strip()
    for deb in ("dotenv", "ruby-dotenv", "bash", "dash", "busybox", "zsh"):
        proc = _run(["dpkg-query", "-W", "-f", "${Version}", deb])
        out[f"debian {deb}"] = proc.stdout.decode().strip()
    return out


# -- single-file helpers for the unit and property tests ---------------------------------------


def read_bash(path: Path) -> dict[str, str]:
    dump = (
        f"{sys.executable} -c 'import os,json,sys; sys.stdout.write(json.dumps(dict(os.environ)))'"
    )
    out = subprocess.run(
        ["bash", "-c", f'set -a; . "$1"; exec {dump}', "bash", str(path)],
        env=CLEAN_ENV,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def read_python_dotenv(path: Path) -> dict[str, str | None]:
    return dict(dotenv_values(path))


def read_dotenv_rust(path: Path) -> dict[str, str]:
    got = _dotenv_rust([path])["dotenv-rust (Debian)"][path]
    if isinstance(got, Failed):
        raise ValueError(f"dotenv-rust refused the file: {got.message}")
    return got  # type: ignore[return-value]


def read_docker_env_file(path: Path) -> dict[str, str]:
    return dict(_docker_parse(path.read_bytes()))


def read_json(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
