"""``loader run --template SRC:DEST``: the templates rendered before the command starts and,
with ``--watch``, on each change, all or nothing (:mod:`loader.templatefiles`).

Imported only when a template is given: rendering reads YAML, and ``loader run`` without
templates stays as light as before.
"""

from __future__ import annotations

from loader import reloads
from loader.errors import ConfigError, UnrenderableError, UsageError
from loader.settingtypes import TEMPLATE_FORMATS, TEMPLATE_SPELLINGS, template_targets
from loader.templatefiles import TemplateSet, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from loader.runner.options import RunOptions


class RunTemplates:
    def __init__(self, opts: RunOptions) -> None:
        try:
            targets = template_targets(opts.many("template"), opts.get("template_output"))
        except ValueError as exc:
            raise UsageError(f"run: {exc}") from None
        self.set = TemplateSet(
            targets,
            fmt=opts.choice("template_format", TEMPLATE_FORMATS),
            spelling=opts.choice("template_spelling", TEMPLATE_SPELLINGS),
            allow_disk=opts.on("allow_disk"),
        )

    def write(self, values: Mapping[str, str]) -> list[Path]:
        """Render every template, then write those whose bytes changed; nothing is written
        when one cannot render (65) and a write that fails is 78."""
        pending, errors = self.set.render(values)
        if errors:
            raise UnrenderableError("; ".join(errors))
        written, errors = write_all(pending)
        if errors:
            raise ConfigError("; ".join(errors))
        return written

    def routes(self) -> reloads.Feeds:
        return self.set.routes()
