"""Turn a snapshot into files: the env file and the rendered templates, written safely.

Every target renders into memory first, and the files are written only when all of them
rendered: a revision one target cannot carry (a value its format cannot carry, a template
referencing a missing secret) writes nothing, and every file keeps its last good content, so
all files always show one revision. Files are written atomically (same-directory temp file,
0600, fsync, rename, then a data-modify event watchers count) and only when their bytes
change; secrets go only to tmpfs/ramfs unless ``allow_disk``. (The template files themselves:
:mod:`loader.templatefiles`.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from loader import formats, reloads, template
from loader.agent.snapshot import Snapshot
from loader.errors import UnrenderableError
from loader.fswatch import reread
from loader.templatefiles import FileSink, TemplateFile, TemplateSet, write_all

log = logging.getLogger("loader.agent")


@dataclass
class RenderResult:
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Renderer:
    def __init__(
        self,
        *,
        output: Path | None,
        fmt: str,
        templates: TemplateSet,
        allow_disk: bool,
    ) -> None:
        self.fmt = fmt
        self.env_sink = FileSink(output, allow_disk) if output else None
        self.templates = templates
        self._warned: set[str] = set()

    @property
    def template_files(self) -> list[TemplateFile]:
        return self.templates.files

    def reload_template(self, one: TemplateFile) -> bool:
        """Re-read one template file; True when its text changed."""
        text = reread(one.read, one.text, "template", log)
        if text is None:
            return False
        one.text = text
        return True

    def routes(self, names: list[str]) -> reloads.Feeds:
        """Where each secret reaches the app: the env file carries every one of ``names``."""
        env = reloads.environment(names, str(self.env_sink.path)) if self.env_sink else {}
        return reloads.merge(env, self.templates.routes())

    def render(self, snapshot: Snapshot) -> RenderResult:
        result = RenderResult()
        for warning in template.spice_warnings(snapshot.values):
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("%s", warning)
        pending, result.errors = self.templates.render(snapshot.values)
        if self.env_sink is not None:
            try:
                data = formats.render(self.fmt, snapshot.values).encode()
                pending.insert(0, (self.env_sink, data))
            except UnrenderableError as exc:
                result.errors.insert(0, f"{self.env_sink.path}: {exc}")
        if result.errors:
            return result  # all or nothing: every file shows the same revision
        result.written, result.errors = write_all(pending)
        for sink, _ in pending:
            if sink.path not in result.written:
                log.debug("revision %d: %s unchanged, not rewritten", snapshot.revision, sink.path)
        return result
