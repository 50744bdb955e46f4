"""Reload or restart: where each secret reaches the runtime, and the decision per change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loader import reloads, template
from tests.data import EXAMPLES

POD = """\
version: v1
kind: Spicepod
name: shop
secrets:
  - from: aws_secrets_manager:prod
    name: aws
    params:
      aws_secret_access_key: $<secrets:AWS_KEY>
runtime:
  auth:
    api-key:
      enabled: true
      keys: [$<secrets:API_KEY>]
datasets:
  - from: postgres:orders
    name: orders
    params:
      pg_pass: $<secrets:PG_PASS>
      pg_user: ${secrets:PG_USER}
models:
  - from: openai:gpt-4o
    name: gpt
    params:
      openai_api_key: $<secrets:OPENAI_KEY>
catalogs:
  - from: unity_catalog:https://uc/api/2.1/unity-catalog/catalogs/x
    name: uc
    params:
      unity_catalog_token: $<secrets:UC_TOKEN>
embeddings:
  - from: openai:text-embedding-3-small
    name: emb
    params:
      openai_api_key: $<secrets:EMBED_KEY>
"""
WHERE = "/dev/shm/app/spicepod.yaml"
FEEDS = reloads.routes(POD, "yaml", "auto", WHERE)


def test_routes_name_the_component_each_secret_reaches() -> None:
    parts = {name: sorted(r.part for r in found) for name, found in FEEDS.items()}
    assert parts == {
        "AWS_KEY": ["secret store params"],
        "API_KEY": ["runtime settings"],
        "PG_PASS": ["dataset params"],
        "OPENAI_KEY": ["model params"],
        "UC_TOKEN": ["catalog params"],
        "EMBED_KEY": ["spicepod embeddings"],
    }  # PG_USER is the runtime's own reference: loader does not feed it


@pytest.mark.parametrize(
    ("changed", "policy", "action", "words"),
    [
        (["PG_PASS"], "auto", "reload", ["PG_PASS", "dataset params", "pods watcher"]),
        (["OPENAI_KEY", "UC_TOKEN"], "auto", "reload", ["catalog params, model params"]),
        (["AWS_KEY"], "auto", "restart", ["AWS_KEY reaches secret store params in " + WHERE]),
        (["API_KEY"], "auto", "restart", ["API_KEY reaches runtime settings"]),
        (["EMBED_KEY"], "auto", "restart", ["spicepod embeddings"]),
        (["PG_PASS", "API_KEY"], "auto", "restart", ["API_KEY reaches runtime settings"]),
        (["PG_USER", "UNUSED"], "auto", "none", ["reach no output"]),
        (["PG_PASS"], "always", "restart", ["restart policy always"]),
        (["API_KEY"], "never", "reload", ["files only"]),
    ],
)
def test_decision_table(changed: list[str], policy: str, action: str, words: list[str]) -> None:
    decision = reloads.decide(changed, FEEDS, policy)
    assert decision.action == action
    for word in words:
        assert word in decision.line
    assert decision.names == tuple(sorted(changed))


def test_a_secret_also_in_the_environment_needs_a_restart() -> None:
    feeds = reloads.merge(FEEDS, reloads.environment(["PG_PASS"]))
    decision = reloads.decide(["PG_PASS"], feeds, "auto")
    assert decision.restart
    assert "PG_PASS reaches the environment" in decision.line
    env_file = reloads.merge(FEEDS, reloads.environment(["PG_PASS"], "/dev/shm/app.env"))
    assert "an env file in /dev/shm/app.env" in reloads.decide(["PG_PASS"], env_file, "auto").line


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("a=$<secrets:A>\n", "text"),
        ("kind: Dataset\nparams: {k: $<secrets:A>}\n", "yaml"),  # a component file
        ('{"kind": "Spicepod", "runtime": {"k": "$<secrets:A>"}}', "json"),
        ("datasets: [unclosed $<secrets:A>\n", "yaml"),
    ],
)
def test_anything_but_spicepod_component_params_restarts(text: str, kind: str) -> None:
    feeds = reloads.routes(text, kind, "auto", "/dev/shm/out")
    assert reloads.decide(["A"], feeds, "auto").restart


def test_json_spicepod_dataset_params_reload() -> None:
    text = '{"kind": "Spicepod", "datasets": [{"params": {"p": "$<secrets:A>"}}]}'
    assert reloads.decide(["A"], reloads.routes(text, "json", "auto", "x"), "auto").action == (
        "reload"
    )


def test_changed_names_cover_added_removed_and_changed() -> None:
    assert reloads.changed_names(
        {"A": "1", "B": "2", "C": "3"}, {"A": "1", "B": "9", "D": "4"}
    ) == [
        "B",
        "C",
        "D",
    ]


def test_decision_lines_carry_names_never_values() -> None:
    canary = "canary-value-7f3a"
    values = {"PG_PASS": canary}
    decision = reloads.decide(reloads.changed_names({}, values), FEEDS, "auto")
    assert canary not in decision.line and "PG_PASS" in decision.line


# -- the real spicepods -----------------------------------------------------------------------

_TOP = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def _sections_by_line(text: str) -> dict[str, set[str]]:
    """An independent reading: each reference's top-level section, from the line layout."""
    found: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        top = _TOP.match(line)
        if top:
            section = top.group(1)
        for name in template.references(line):
            found.setdefault(name, set()).add(section)
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_real_spicepods_decide_by_the_section_each_reference_sits_in(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    respelt = template.REFERENCE.sub(lambda m: f"$<secrets:{m.group(1)}>", text)
    feeds = reloads.routes(respelt, "yaml", "auto", str(path))
    sections = _sections_by_line(text)
    assert set(feeds) == set(sections)
    for name, where in sections.items():
        expected = "reload" if where <= set(reloads.RELOADED) else "restart"
        assert reloads.decide([name], feeds, "auto").action == expected, (name, where)


def test_real_spicepods_cover_every_kind() -> None:
    """The examples hold references in reloaded and in restarted sections both."""
    kinds = set()
    for path in EXAMPLES:
        text = template.REFERENCE.sub(
            lambda m: f"$<secrets:{m.group(1)}>", path.read_text(encoding="utf-8")
        )
        for found in reloads.routes(text, "yaml", "auto", "x").values():
            kinds |= {r.part for r in found}
    assert {"dataset params", "model params"} <= kinds
    assert kinds - {"dataset params", "model params", "catalog params"}
