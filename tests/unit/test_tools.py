"""A missing real tool skips a test on a developer's machine and fails it in CI (tests.tools)."""

from __future__ import annotations

import pytest

from tests import tools


def test_a_present_tool_goes_on() -> None:
    tools.require("/usr/bin/helm", "helm")


@pytest.mark.parametrize(("required", "outcome"), [(False, "skip"), (True, "fail")])
def test_a_missing_tool_skips_or_in_ci_fails(
    monkeypatch: pytest.MonkeyPatch, required: bool, outcome: str
) -> None:
    monkeypatch.setattr(tools, "REQUIRED", required)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match=r"helm is not installed \(bash .ci/run installs it\)"):
        tools.require(None, "helm")
