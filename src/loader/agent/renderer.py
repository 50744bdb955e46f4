"""Turn a snapshot into files: the env file and the rendered template, written safely.

Every target renders into memory first, and the files are written only when all of them
rendered: a revision one target cannot carry (a value its format cannot carry, a template
referencing a missing secret) writes nothing, and every file keeps its last good content, so
all files always show one revision. Files are
written atomically (same-directory temp file, 0600, fsync, rename) and only when their bytes
change; secrets go only to tmpfs/ramfs unless ``allow_disk``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from loader import formats, template
from loader.agent.snapshot import Snapshot
from loader.errors import ConfigError, UnrenderableError
from loader.fsguard import check_output, read_output, read_trusted
from loader.fsio import atomic_write, check_secret_target
from loader.fswatch import reread

log = logging.getLogger("loader.agent")


class FileSink:
    """One output file; knows its current bytes so unchanged content is not rewritten.

    What is at the path already must be our own regular file (:mod:`loader.fsguard`), at start
    and before every write: another user's file, a symlink or a FIFO is refused, not read.
    """

    def __init__(self, path: Path, allow_disk: bool) -> None:
        check_secret_target(path, allow_disk)
        self.path = path
        self._current = read_output(path)

    def write(self, data: bytes) -> bool:
        if data == self._current:
            return False
        check_output(self.path)
        atomic_write(self.path, data, mode=0o600)
        self._current = data
        return True


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
        template_path: Path | None,
        template_output: Path | None,
        template_kind: str,
        allow_disk: bool,
    ) -> None:
        self.fmt = fmt
        self.env_sink = FileSink(output, allow_disk) if output else None
        self.template_path = template_path
        self.template_kind = template_kind
        self.template_sink = FileSink(template_output, allow_disk) if template_output else None
        self._template: str | None = None
        if template_path is not None:
            self._template = self._read_template()
        self._warned: set[str] = set()

    def _read_template(self) -> str:
        assert self.template_path is not None
        try:
            return read_trusted(self.template_path).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"cannot read template {self.template_path}: {reason}") from None

    def reload_template(self) -> bool:
        """Re-read the template file; True when its text changed."""
        text = reread(self._read_template, self._template, "template", log)
        if text is None:
            return False
        self._template = text
        return True

    def render(self, snapshot: Snapshot) -> RenderResult:
        result = RenderResult()
        for warning in template.spice_warnings(snapshot.values):
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("%s", warning)
        pending: list[tuple[FileSink, bytes]] = []
        if self.env_sink is not None:
            try:
                pending.append((self.env_sink, formats.render(self.fmt, snapshot.values).encode()))
            except UnrenderableError as exc:
                result.errors.append(f"{self.env_sink.path}: {exc}")
        if self.template_sink is not None and self._template is not None:
            try:
                out = template.render(self._template, snapshot.values, self.template_kind)
                pending.append((self.template_sink, out.text.encode()))
            except UnrenderableError as exc:
                result.errors.append(f"{self.template_sink.path}: {exc}")
        if result.errors:
            return result  # all or nothing: every file shows the same revision
        for sink, data in pending:
            try:
                if sink.write(data):
                    result.written.append(sink.path)
                else:
                    log.debug(
                        "revision %d: %s unchanged, not rewritten", snapshot.revision, sink.path
                    )
            except ConfigError as exc:
                result.errors.append(str(exc))
            except OSError as exc:
                result.errors.append(f"{sink.path}: cannot write: {exc.strerror}")
        return result
