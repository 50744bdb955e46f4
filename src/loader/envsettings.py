"""Settings models on pydantic, for the store and the webhook (processes that load pydantic for
their request bodies anyway). They read ``<env_prefix><FIELD>`` variables in any case and go
through :func:`loader.settings.load` like the agent's; schemas are built on first use, so a
process pays only for the settings it builds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from loader.settings import SettingError, from_prefix
from loader.units import parse_duration

M = TypeVar("M", bound="EnvSettings")


class EnvSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    env_prefix: ClassVar[str] = "LOADER_"

    @classmethod
    def from_environ(cls: type[M], environ: Mapping[str, str], **given: Any) -> M:
        found = from_prefix(environ, cls.env_prefix, list(cls.model_fields))
        try:
            return cls(**{**found, **given})
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            raise SettingError(field, "required" if err["type"] == "missing" else message) from None


def duration(value: Any) -> Any:
    """For ``mode="before"`` validators: ``30s``/``5m`` text to seconds; empty to None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_duration(value)
    return value
