"""Validation of the identifiers the contract fixes: secret, environment and app names, app ids."""

from __future__ import annotations

import re

from loader.errors import InvalidRequestError, InvalidSecretNameError

SECRET_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
SECRET_NAME_MAX = 256
ENV_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ENV_NAME_MAX = 64
APP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$"
APP_NAME_MAX = 128
APP_ID_PATTERN = r"^[1-9][0-9]*$"
MAX_ID = 2**63 - 1
DEFAULT_ENVIRONMENT = "default"
# What the Spice runtime accepts inside ${secrets:NAME} (its secret-key grammar).
SPICE_KEY_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_-]*$"

_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_APP_NAME = re.compile(APP_NAME_PATTERN)
_SPICE_KEY = re.compile(SPICE_KEY_PATTERN)


def is_secret_name(name: str) -> bool:
    return len(name) <= SECRET_NAME_MAX and _SECRET_NAME.fullmatch(name) is not None


def check_secret_name(name: str) -> str:
    if not is_secret_name(name):
        raise _invalid("secret", SECRET_NAME_PATTERN, SECRET_NAME_MAX, InvalidSecretNameError)
    return name


def check_environment_name(name: str) -> str:
    if len(name) > ENV_NAME_MAX or _ENV_NAME.fullmatch(name) is None:
        raise _invalid("environment", ENV_NAME_PATTERN, ENV_NAME_MAX)
    return name


def check_app_name(name: str) -> str:
    if len(name) > APP_NAME_MAX or _APP_NAME.fullmatch(name) is None:
        raise _invalid("app", APP_NAME_PATTERN, APP_NAME_MAX)
    return name


def _invalid(
    what: str, pattern: str, longest: int, cls: type[InvalidRequestError] = InvalidRequestError
) -> InvalidRequestError:
    # The name is not echoed: a mistyped command line may have put a value there.
    return cls(f"invalid {what} name: names match {pattern} and have at most {longest} characters")


def parse_app_id(raw: str) -> int:
    """A positive integer that fits a signed 64-bit column; anything else is a 400."""
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit() or raw.startswith("0"):
        raise InvalidRequestError("invalid app id: app ids are positive integers")
    value = int(raw)
    if value > MAX_ID:
        raise InvalidRequestError("invalid app id: app ids are positive integers")
    return value


def app_ref(raw: str) -> int | str:
    """``--app``/``LOADER_APP``: an id (all digits) or an app name, checked either way."""
    text = raw.strip()
    if text.isascii() and text.isdigit():
        return parse_app_id(text)
    return check_app_name(text)


def find_app(apps: list[dict[str, object]], name: str) -> int:
    """The id of the app called ``name`` in a ``GET /v1/apps`` answer."""
    from loader.errors import NotFoundError

    for app in apps:
        if app.get("name") == name:
            return int(str(app["id"]))
    from loader.errors import shown

    raise NotFoundError(f"no app named {shown(name)!r} (`loader apps list` shows them)")


APP_LOOKUP_SCOPE = (
    "an app given by name is looked up in the app list, which needs a token with apps:read: "
    "give the app id instead"
)


def is_spice_key(name: str) -> bool:
    return _SPICE_KEY.fullmatch(name) is not None
