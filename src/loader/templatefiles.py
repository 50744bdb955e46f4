"""Templates rendered to files, as many as given, all or nothing: the agent's and ``loader
run --template``'s. (The substitution itself is :mod:`loader.template`; which part of the
runtime each secret reaches, :mod:`loader.reloads`.)

Every target renders into memory first; the caller writes only when all rendered, so every
file shows one revision. Files are written atomically (:func:`loader.fsio.atomic_write`) and
only when their bytes change; secrets go only to tmpfs/ramfs unless ``allow_disk``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from loader import reloads, template
from loader.errors import ConfigError, UnrenderableError
from loader.fsguard import check_output, read_output, read_trusted
from loader.fsio import atomic_write, check_secret_target


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


def kind_of(source: Path, output: Path, fmt: str) -> str:
    """``fmt`` unless ``auto``: then by the template's extension, else the output's."""
    if fmt != "auto":
        return fmt
    kind = template.kind_for(str(source))
    return kind if kind != "text" else template.kind_for(str(output))


class TemplateFile:
    """One template and where it renders; its text is read at start and on :meth:`reload`."""

    def __init__(
        self, source: Path, output: Path, *, fmt: str, spelling: str, allow_disk: bool
    ) -> None:
        self.source = source
        self.kind = kind_of(source, output, fmt)
        self.spelling = spelling
        self.sink = FileSink(output, allow_disk)
        self.text = self.read()

    def read(self) -> str:
        try:
            return read_trusted(self.source).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"cannot read template {self.source}: {reason}") from None

    def render(self, values: Mapping[str, str]) -> bytes:
        return template.render(self.text, values, self.kind, self.spelling).text.encode()

    def routes(self) -> reloads.Feeds:
        return reloads.routes(self.text, self.kind, self.spelling, str(self.sink.path))


class TemplateSet:
    """The templates of one process (maybe none)."""

    def __init__(
        self,
        targets: list[tuple[str, str]],
        *,
        fmt: str = "auto",
        spelling: str = "auto",
        allow_disk: bool = False,
    ) -> None:
        self.files = [
            TemplateFile(Path(src), Path(dest), fmt=fmt, spelling=spelling, allow_disk=allow_disk)
            for src, dest in targets
        ]

    def render(self, values: Mapping[str, str]) -> tuple[list[tuple[FileSink, bytes]], list[str]]:
        """Every file's new bytes, and an error per file that cannot render (names only)."""
        pending: list[tuple[FileSink, bytes]] = []
        errors: list[str] = []
        for one in self.files:
            try:
                pending.append((one.sink, one.render(values)))
            except UnrenderableError as exc:
                errors.append(f"{one.sink.path}: {exc}")
        return pending, errors

    def routes(self) -> reloads.Feeds:
        return reloads.merge(*(one.routes() for one in self.files))


def write_all(pending: list[tuple[FileSink, bytes]]) -> tuple[list[Path], list[str]]:
    """Write each rendered file whose bytes changed: (written, errors)."""
    written: list[Path] = []
    errors: list[str] = []
    for sink, data in pending:
        try:
            if sink.write(data):
                written.append(sink.path)
        except ConfigError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{sink.path}: cannot write: {exc.strerror}")
    return written, errors
