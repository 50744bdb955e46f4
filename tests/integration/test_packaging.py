"""The wheel and the image recipe. There is no Docker engine here, so the Dockerfile's two
stages are replayed with pip on exactly the files its .dockerignore lets into the build
context: wheels for the project and its dependencies, then a clean venv that installs from
those wheels alone and runs ``loader``. The Dockerfile itself is checked as text."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import free_port, spawn, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# -- the Dockerfile, parsed ---------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Comments dropped, ``\\`` continuations joined, one instruction per entry."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "a continuation at the end of the Dockerfile"
    return out


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in parsed:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[list[Instruction]]:
    return stages(instructions(DOCKERFILE.read_text()))


def test_dockerfile_is_multi_stage_from_python_slim(dockerfile: list[list[Instruction]]) -> None:
    text = DOCKERFILE.read_text()
    assert len(dockerfile) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.1[2-9]-slim$", text, re.M)
    froms = [stage[0].args for stage in dockerfile]
    assert froms[0] == "${PYTHON_IMAGE} AS build"
    assert froms[-1].startswith("${PYTHON_IMAGE}")
    build = " ".join(i.args for i in dockerfile[0] if i.keyword == "RUN")
    assert 'pip wheel --wheel-dir /wheels ".[fast]"' in build


def test_dockerfile_final_stage_installs_wheels_only_and_runs_unprivileged(
    dockerfile: list[list[Instruction]],
) -> None:
    final = dockerfile[-1]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for compiler in ("gcc", "g++", "build-essential", "clang", "make ", "apt-get install"):
        assert compiler not in runs, compiler
    assert "--mount=type=bind,from=build,source=/wheels" in runs
    assert (
        'pip install --no-cache-dir --no-index --find-links=/wheels "secret-loader[fast]"' in runs
    )
    assert not [i for i in final if i.keyword in ("COPY", "ADD") and "/src" in i.args]
    assert "groupadd --gid 65532" in runs
    assert "useradd --uid 65532 --gid 65532" in runs
    users = [i.args for i in final if i.keyword == "USER"]
    assert users[-1] == "65532:65532"
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp"):
        assert setting in env
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_dockerfile_entrypoint_cmd_and_healthcheck(dockerfile: list[list[Instruction]]) -> None:
    final = dockerfile[-1]
    (entrypoint,) = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "loader"]
    (cmd,) = [i.args for i in final if i.keyword == "CMD"]
    assert json.loads(cmd) == ["--help"]
    assert healthcheck_command() == ["python", "-m", "loader.healthcheck"]


def healthcheck_command() -> list[str]:
    (health,) = [
        i.args for stage in stages(instructions(DOCKERFILE.read_text())) for i in stage
        if i.keyword == "HEALTHCHECK"
    ]  # fmt: skip
    options, sep, command = health.partition("CMD ")
    assert sep, health
    assert "--interval=" in options
    assert "--timeout=" in options
    parsed: list[str] = json.loads(command)
    return parsed


# -- the build context --------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, closely enough: the last pattern matching the path or one of its parent
    directories wins; ``!`` re-includes; ``**/`` matches at any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        options = [pattern]
        if pattern.startswith("**/"):
            options.append(pattern[3:])
            options += [f"*/{pattern[3:]}", f"*/*/{pattern[3:]}", f"*/*/*/{pattern[3:]}"]
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in options):
            result = not negate
    return result


def dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_lets_in_only_the_build_inputs(dockerfile: list[list[Instruction]]) -> None:
    patterns = dockerignore_patterns()
    assert patterns[0] == "*"
    for copied in [
        i.args.split()[:-1]
        for stage in dockerfile
        for i in stage
        if i.keyword == "COPY" and not i.args.startswith("--from=")  # not from the context
    ]:
        for source in copied:
            assert (ROOT / source).exists(), source
            probe = source.rstrip("/") + ("/x.py" if source.endswith("/") else "")
            assert not ignored(probe, patterns), source
    for kept in ("pyproject.toml", "README.md", "scripts/loader", "src/loader/cli.py"):
        assert not ignored(kept, patterns), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/bin/helm",
        "bench/out/results.json",
        "build/lib/loader/cli.py",
        "tests/conftest.py",
        ".pytest_cache/v/cache/lastfailed",
        "src/loader/__pycache__/cli.cpython-312.pyc",
        "src/secret_loader.egg-info/PKG-INFO",
        "src/loader/store/master.key",
        "master.key",
        "helm/loader/values.yaml",
    ):
        assert ignored(dropped, patterns), dropped


# -- the two stages, replayed -------------------------------------------------------------------


@dataclass
class Built:
    wheel: Path
    wheels: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _context_copy(dest: Path) -> Path:
    """The files the build context holds (what the Dockerfile copies, .dockerignore applied)."""
    patterns = dockerignore_patterns()
    for top in ("pyproject.toml", "README.md", "scripts", "src"):
        source = ROOT / top
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            if not ignored(rel, patterns):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return dest


def _clean_env() -> dict[str, str]:
    drop = ("LOADER_", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, f"{shlex.join(str(a) for a in args)}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """1. the project's wheel (`pip wheel --no-deps`) from a copy of the build context (building
    in the working tree would write build/ and *.egg-info there); 2. wheels for its
    dependencies (the Dockerfile's build stage); 3. a clean venv (no system site-packages)
    installing from those wheels with --no-index (the final stage: nothing else is needed)."""
    base = tmp_path_factory.mktemp("packaging")
    context = _context_copy(base / "context")
    dist, wheels, venv = base / "dist", base / "wheels", base / "venv"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, ".", cwd=context)
    (wheel,) = dist.glob("secret_loader-*.whl")
    _run(sys.executable, "-m", "pip", "wheel", "--wheel-dir", wheels, f"{wheel}[fast]", cwd=base)
    _run(sys.executable, "-m", "venv", venv, cwd=base)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    _run(
        venv / "bin" / "python", "-m", "pip", "install", "--no-cache-dir", "--no-index",
        "--find-links", wheels, "secret-loader[fast]", cwd=base, timeout=180,
    )  # fmt: skip
    yield Built(wheel, wheels, venv)


def test_wheel_carries_the_package_data_and_the_loader_script(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    for needed in (
        "loader/__main__.py",
        "loader/py.typed",
        "loader/demo/spicepod.yaml",
        "loader/store/migrations/sqlite/0001_initial.sql",
        "loader/webhook/inject.py",
        "loader/commands/webhook.py",
    ):
        assert needed in names, needed
    assert any(n.endswith(".data/scripts/loader") for n in names)
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert all(p.suffix == ".whl" for p in built.wheels.iterdir())


def test_clean_venv_runs_loader_and_python_m_loader(built: Built, tmp_path: Path) -> None:
    """Run from an unrelated directory: the venv's own copy is imported, not the source tree."""
    out = _run(built.bin / "loader", "--help", cwd=tmp_path)
    assert "usage: loader" in out.stdout
    for command in ("store", "agent", "render", "run", "webhook"):
        assert command in out.stdout
    out = _run(built.bin / "python", "-m", "loader", "--help", cwd=tmp_path)
    assert "usage: loader" in out.stdout
    out = _run(built.bin / "loader", "webhook", "--help", cwd=tmp_path)
    assert "LOADER_WEBHOOK_" in out.stdout
    out = _run(built.bin / "loader", "--version", cwd=tmp_path)
    assert "loader 0.1.0" in out.stdout + out.stderr
    where = _run(
        built.bin / "python", "-c", "import loader; print(loader.__file__)", cwd=tmp_path
    ).stdout.strip()
    assert where.startswith(str(built.venv)), where


def test_image_healthcheck_command_against_a_real_agent(
    built: Built, shm: Path, tmp_path: Path
) -> None:
    """The HEALTHCHECK's exact command, run by the clean venv's python: 0 while an agent (from
    the same venv, its store unreachable: /healthz answers anyway) serves, non-zero once it
    stopped."""
    command = [str(built.bin / "python") if a == "python" else a for a in healthcheck_command()]
    port = free_port()
    env = {
        **_clean_env(),
        "LOADER_STORE_URL": f"http://127.0.0.1:{free_port()}",
        "LOADER_TOKEN": "lt_000000000000_unused",
        "LOADER_APP": "1",
        "LOADER_OUTPUT": str(shm / "app.env"),
        "LOADER_LISTEN": f"127.0.0.1:{port}",
    }
    probe_env = {**_clean_env(), "LOADER_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
    agent = spawn([str(built.bin / "loader"), "agent"], tmp_path / "agent.log", env)
    try:
        wait_for_line(agent, r"listening on (\S+)")
        deadline = time.monotonic() + 30
        while probe(command, probe_env) != 0:
            assert time.monotonic() < deadline, agent.logs()
            time.sleep(0.05)
    finally:
        agent.stop()
    assert probe(command, probe_env) != 0


def probe(command: list[str], env: dict[str, str]) -> int:
    return subprocess.run(command, env=env, capture_output=True, timeout=30, check=False).returncode
