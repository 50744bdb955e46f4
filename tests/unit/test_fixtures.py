"""The fixtures copied from outside the project (tests/data/README.md) are the files their
sources name, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.data import DATA, EXAMPLES, SEED, SPICE


def git_blob(data: bytes) -> str:
    """What ``git hash-object`` prints for a file holding ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def test_the_spicepod_schema_is_upstreams_blob() -> None:
    data = (SPICE / "spicepod.schema.json").read_bytes()
    assert git_blob(data) == "f5fd88f723100368f4c58bca5ef532cd94e6abdb"
    assert len(data) == 458_689


def test_the_vendor_openapi_document_is_the_seed() -> None:
    digest = hashlib.sha256(SEED.read_bytes()).hexdigest()
    assert digest in (DATA / "README.md").read_text()


SOURCES = (SPICE / "examples" / "SOURCES.md").read_text()
BLOBS = dict(re.findall(r"^## (\S+)\n(?:.*\n)*?- blob: ([0-9a-f]{40})", SOURCES, re.MULTILINE))


def test_every_example_is_listed_in_its_sources() -> None:
    assert len(EXAMPLES) == 15
    assert sorted(BLOBS) == sorted(p.name for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_is_the_blob_its_sources_name(path: Path) -> None:
    assert git_blob(path.read_bytes()) == BLOBS[path.name]
