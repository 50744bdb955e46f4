from __future__ import annotations

import pytest

from loader import names
from loader.errors import InvalidRequestError, InvalidSecretNameError


@pytest.mark.parametrize(
    "name", ["DATABASE_URL", "_internal_api_key", "stripe_api_key_v2", "a", "_", "A" * 256]
)
def test_valid_secret_names(name: str) -> None:
    assert names.check_secret_name(name) == name


@pytest.mark.parametrize(
    "name", ["123-invalid", "my-secret", "api.key", "", "A" * 257, "a b", "ä", "a\n", "1A"]
)
def test_invalid_secret_names(name: str) -> None:
    with pytest.raises(InvalidSecretNameError):
        names.check_secret_name(name)


@pytest.mark.parametrize(
    "raw", ["0", "-1", "01", "+1", "1e3", "abc", "", " 1", "١", "9" * 20, str(2**63)]
)
def test_bad_app_ids(raw: str) -> None:
    with pytest.raises(InvalidRequestError):
        names.parse_app_id(raw)


@pytest.mark.parametrize("raw", ["1", "42", str(2**63 - 1)])
def test_good_app_ids(raw: str) -> None:
    assert names.parse_app_id(raw) == int(raw)


@pytest.mark.parametrize("env", ["default", "prod", "staging-eu.1", "A_b"])
def test_good_environment_names(env: str) -> None:
    assert names.check_environment_name(env) == env


@pytest.mark.parametrize("env", ["", "-x", ".x", "a/b", "a b", "x" * 65])
def test_bad_environment_names(env: str) -> None:
    with pytest.raises(InvalidRequestError):
        names.check_environment_name(env)


@pytest.mark.parametrize(("name", "ok"), [("A", True), ("a-b", True), ("_x", False), ("1", False)])
def test_spice_key(name: str, ok: bool) -> None:
    assert names.is_spice_key(name) is ok
