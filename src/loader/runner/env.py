"""Build the child's environment (pure)."""

from __future__ import annotations

from loader.credentials import is_credential
from loader.errors import NotFoundError, UnrenderableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def build_env(
    base: Mapping[str, str],
    secrets: Mapping[str, str],
    *,
    override: bool = False,
    only: frozenset[str] | None = None,
    prefix: str = "",
) -> dict[str, str]:
    """``base`` (less loader's own credentials) plus the secrets: existing variables win
    unless ``override``."""
    env = {k: v for k, v in base.items() if not is_credential(k)}
    if only is not None:
        missing = sorted(n for n in only if n not in secrets and prefix + n not in env)
        if missing:
            raise NotFoundError(f"--only names secret(s) that are not set: {', '.join(missing)}")
    for name, value in secrets.items():
        if only is not None and name not in only:
            continue
        if "\x00" in value:
            raise UnrenderableError(
                f"secret {name} contains a NUL character and cannot be an environment variable",
                name,
            )
        key = prefix + name
        if override or key not in env:
            env[key] = value
    return env


def parse_names(text: str | None) -> frozenset[str] | None:
    if not text:
        return None
    return frozenset(n.strip() for n in text.split(",") if n.strip())
