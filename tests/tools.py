"""The real programs the tests read and serve with -- helm, PostgreSQL, the docker CLI -- and
what their absence means: on a developer's machine their tests skip, saying what is missing;
in CI (``.ci/run`` installs them all and sets ``TESTS_REQUIRE_TOOLS=1``) it is a failure, so a
broken installation cannot pass as a green run. (The env file readers of the reader matrix
are errors everywhere: :class:`tests.readers.ReaderMissingError`.)"""

from __future__ import annotations

import os

import pytest

REQUIRED = os.environ.get("TESTS_REQUIRE_TOOLS") == "1"


def require(found: object, what: str) -> None:
    """Go on when ``found``; else skip, or in CI fail, naming ``what`` is missing."""
    if found:
        return
    message = f"{what} is not installed (bash .ci/run installs it)"
    if REQUIRED:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
