"""Writers smuggle a Spice runtime reference into a rendered file: split across two secrets,
joined with the template's own text, in any kind of template. The runtime would expand it to
another secret (or an environment variable) of the runtime's; loader refuses to render it, names
the secrets (never a value), and keeps the last good file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from loader import template
from loader.errors import UnrenderableError
from tests.procs import LiveStore, loader_env, run_loader, start_agent, wait_until

# Anything the runtime's lexer would expand (crates/runtime/src/secrets/lexer.rs).
RUNTIME_REFERENCE = re.compile(r"\$\{\s*[a-zA-Z][\w-]*\s*:\s*[a-zA-Z][\w-]*\s*\}")
YAML_POD = 'version: v1\nkind: Spicepod\nname: x\nparams:\n  url: "postgres://${secrets:U}:${secrets:P}@db/x"\n'
SMUGGLING = [
    # (template, kind, values): each value alone is harmless
    (YAML_POD, "yaml", {"U": "${secrets", "P": "API_KEY}"}),
    ("url: ${secrets:U}${secrets:P}\n", "yaml", {"U": "${ env", "P": " : HOME }"}),
    ('{"url": "${secrets:U}:${secrets:P}"}', "json", {"U": "${secrets", "P": "API_KEY}"}),
    ("url: postgres://${secrets:U}:${secrets:P}@db\n", "text", {"U": "${secrets", "P": "K}"}),
    ("a: ${secrets:U}\n${secrets:P}\n", "text", {"U": "${secrets:K", "P": "}"}),
    ("a: ${secrets:U}API_KEY}\n", "text", {"U": "${secrets:"}),  # with the template's text
    ("a: ${secrets:U}\n", "text", {"U": "${\nsecrets\t:\fAPI_KEY }"}),  # the lexer's whitespace
]


@pytest.mark.parametrize(("source", "kind", "values"), SMUGGLING)
def test_a_reference_formed_by_values_is_refused(
    source: str, kind: str, values: dict[str, str]
) -> None:
    with pytest.raises(UnrenderableError) as caught:
        template.render(source, values, kind)
    message = str(caught.value)
    for value in values.values():
        assert value not in message or len(value) < 3  # names, not values


@pytest.mark.parametrize("kind", ["yaml", "json", "text"])
def test_the_templates_own_references_and_harmless_values_render(kind: str) -> None:
    """Runtime references the template wrote stay; values next to them that form none pass."""
    values = {"U": "user}", "P": "${HOME:-/x} $x:y} ${1:2}"}
    if kind == "json":
        source = '{"a": "${env:HOME}${secrets:U}", "b": "${secrets:P}${ env : X }"}'
        assert json.loads(template.render(source, values, kind).text) == {
            "a": "${env:HOME}user}",
            "b": values["P"] + "${ env : X }",
        }
    else:
        source = 'a: "${env:HOME}${secrets:U}"\nb: "${secrets:P}${ env : X }"\n'
        out = yaml.safe_load(template.render(source, values, kind).text)
        assert out == {"a": "${env:HOME}user}", "b": values["P"] + "${ env : X }"}


def test_agent_keeps_the_last_good_spicepod_when_a_split_reference_arrives(
    tmp_path: Path, shm: Path
) -> None:
    """1. the agent renders a spicepod whose scalar joins U and P; 2. a writer sets U to
    '${secrets' (harmless alone: rendered); 3. then P to 'API_KEY}': refused, the file keeps
    step 2's content and never holds a runtime reference, /readyz names U and P; 4. the same
    template as text (spicepod.yaml.tmpl) through `render --once`: exit 65, nothing written."""
    live = LiveStore.start(tmp_path)
    try:
        for name, value in (("U", "user"), ("P", "pass"), ("API_KEY", "smuggle-canary-41f")):
            live.put(name, value)
        pod_template = tmp_path / "spicepod.yaml"
        pod_template.write_text(YAML_POD)
        pod = shm / "spicepod.yaml"
        env = loader_env(
            LOADER_STORE_URL=live.url,
            LOADER_TOKEN=live.token("secrets:reveal"),
            LOADER_APP=str(live.app),
        )
        agent = start_agent(
            tmp_path / "agent.log",
            "--template", str(pod_template), "--template-output", str(pod),
            "--names", "U,P", "--listen", "127.0.0.1:0",
            env=env,
        )  # fmt: skip
        try:
            wait_until(lambda: pod.exists() and "user:pass" in pod.read_text(), what="render")
            live.put("U", "${secrets")
            wait_until(lambda: "${secrets:pass" in pod.read_text(), what="U alone")
            live.put("P", "API_KEY}")
            from loader.httpclient import HttpClient

            endpoint = HttpClient(agent.url)
            wait_until(lambda: endpoint.call("GET", "/readyz").json()["last_error"], what="refusal")
            error = endpoint.call("GET", "/readyz").json()["last_error"]
            endpoint.close()
            assert "U" in error and "P" in error and "API_KEY}" not in error
            text = pod.read_text()
            assert "${secrets:pass" in text and not RUNTIME_REFERENCE.search(
                yaml.safe_load(text)["params"]["url"]
            )
        finally:
            agent.stop()
        assert "API_KEY}" not in agent.logs()

        text_template = tmp_path / "spicepod.yaml.tmpl"
        text_template.write_text(YAML_POD.replace('"', ""))
        out_file = shm / "from-text.yaml"
        out = run_loader(
            "render", "--once", "--template", str(text_template),
            "--template-output", str(out_file), "--names", "U,P", env=env,
        )  # fmt: skip
        assert out.returncode == 65, out.stderr
        assert b"P, U would form" in out.stderr and not out_file.exists()
    finally:
        live.proc.stop()
