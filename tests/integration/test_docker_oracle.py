"""The docker oracle the reader matrix uses agrees with the real docker CLI's parser.

No docker engine runs here; the CLI parses ``--env-file`` itself and posts the result to a fake
daemon (:mod:`tests.readers.docker_cli`). Debian ships the CLI only with the engine: ``.ci/run``
installs docker.io and never starts its daemon. Where no CLI is installed this check skips,
saying so; in CI that is a failure (:mod:`tests.tools`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loader import formats
from tests import tools
from tests.readers import docker_cli
from tests.readers.docker import parse_env_file
from tests.readers.values import VALUES


@pytest.fixture(autouse=True, scope="module")
def _docker_cli() -> None:
    tools.require(docker_cli.available(), "the docker CLI (Debian package docker.io)")


LONGEST = "x" * (64 * 1024 - 1 - len("L="))
EDGES = {
    "bom_and_spaces": "\ufeffA=1\n  \tB=two words \r\nC='quoted'\n#c\nD\n\ufeffE=1\n",
    "no_final_newline": "A=1\nB=end",
    "longest_line": f"L={LONGEST}\n",
    "line_too_long": f"L={LONGEST}x\n",
    "space_in_name": "A B=1\n",
    "no_name": "=1\n",
}


def _oracle(files: list[Path]) -> list[tuple[str, str]] | str:
    out: list[tuple[str, str]] = []
    for f in files:
        try:
            out += parse_env_file(f.read_bytes())
        except ValueError as exc:
            return str(exc)
    return out


def test_oracle_reads_loaders_docker_files_as_docker_does(tmp_path: Path) -> None:
    files = []
    for row, (value, refused_by) in VALUES.items():
        if "docker" not in refused_by:
            path = tmp_path / row
            path.write_text(formats.render("docker", {row: value}), encoding="utf-8")
            files.append(path)
    got = docker_cli.read_env_files(files)
    assert got == _oracle(files)
    assert len(got) == len(files)


@pytest.mark.parametrize("case", sorted(EDGES))
def test_oracle_matches_docker_on_edge_cases(tmp_path: Path, case: str) -> None:
    path = tmp_path / case
    path.write_bytes(EDGES[case].encode())
    got, expected = docker_cli.read_env_files([path]), _oracle([path])
    if isinstance(expected, str):
        assert isinstance(got, str), got  # both refuse the file
    else:
        assert got == expected
