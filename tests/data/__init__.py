"""Fixtures from outside the project, kept in the repository (README.md gives their sources)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent
SPICE = DATA / "spice"
# The real spicepods with secret references (spice/examples/SOURCES.md says where each is from).
EXAMPLES = sorted((SPICE / "examples").glob("*.y*ml"))
# The vendor's OpenAPI document of the Spice.ai Cloud secrets API.
SEED = DATA / "seeds" / "spice-cloud-secrets.openapi.json"
