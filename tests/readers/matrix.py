"""The reader matrix: every hostile value, in every format, read back by every real reader.

``run()`` writes, for each format, one file per table value (what the agent writes for that one
secret, or the writer's refusal), one file holding every table value it carries, and one holding
every generated (fuzz) value it carries; for ``dotenv`` it also writes each value in *each*
spelling (bare, single-, double-quoted) to check the writer's table of misreads
(:data:`loader.formats.SPELLINGS`) against what the readers really do. Each reader reads all the
files of its format in one process (:func:`tests.readers.read_batch`).

``markdown()`` renders the README's matrix from the result (``scripts/reader-matrix``).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loader import formats
from tests.readers import FORMAT_READERS, Batch, Failed, Read, Reader, read_batch
from tests.readers.values import VALUES

FUZZ_COUNT = 150
FUZZ_SEED = 14
# The characters readers treat specially, plus a few plain ones and line/space oddities.
_FUZZ_ALPHABET = (
    "aZ09_ -=:#'\"\\\\$${}()`\n\n\t\r!~%*;,./@|<>?&nrt"
    "\u00e9\u2028\u0085\u000b\u000c\u00a0\u200f\U0001f600"
)


def fuzz_values(count: int = FUZZ_COUNT, seed: int = FUZZ_SEED) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_FUZZ_ALPHABET, k=rng.randint(0, 14))) for _ in range(count)]


@dataclass(frozen=True)
class Misread:
    fmt: str
    reader: str
    what: str  # the table row or fuzz value, and the spelling for probes
    got: str


@dataclass
class Matrix:
    # (format, table row) -> the writer's refusal, or None when it wrote the value
    refused: dict[tuple[str, str], formats.Refusal | None] = field(default_factory=dict)
    # a reader that did not read back a value the writer wrote
    misreads: list[Misread] = field(default_factory=list)
    # a spelling the writer's table says a reader reads exactly, which it misread
    unsound: list[Misread] = field(default_factory=list)
    # table rows the writer refuses in dotenv although some spelling every reader read exactly
    over_refused: list[str] = field(default_factory=list)
    over_refused_fuzz: int = 0  # the same among the fuzz values (reported, not asserted)
    files_read: int = 0

    @property
    def ok(self) -> bool:
        return not (self.misreads or self.unsound)


@dataclass
class _Plan:
    """The files of one batch, the variables each declares, and what each reader must see."""

    dir: Path
    files: list[Path] = field(default_factory=list)
    expected: dict[Path, dict[str, str]] = field(default_factory=dict)
    label: dict[Path, str] = field(default_factory=dict)

    def add(self, stem: str, text: str, expected: dict[str, str], label: str) -> Path:
        path = self.dir / stem
        path.write_text(text, encoding="utf-8")
        self.files.append(path)
        self.expected[path] = expected
        self.label[path] = label
        return path

    def names(self, path: Path) -> set[str]:
        return set(self.expected[path])


def _shown(got: Read, name: str) -> str:
    if isinstance(got, Failed):
        return f"failed: {got.message}"
    text = repr(got.get(name)) if set(got) <= {name} else repr(got)
    return text if len(text) < 160 else text[:150] + "..."


def _exact(got: Read, expected: Mapping[str, str]) -> bool:
    return not isinstance(got, Failed) and got == dict(expected)


def _plan_format(plan: _Plan, fmt: str, fuzz: list[str], matrix: Matrix) -> list[Path]:
    """The agent's own files for ``fmt``: one per table value, all table values, all fuzz.

    Variable names are unique across the batch (``node --env-file`` loads every file into one
    environment): they start with the format's initial.
    """
    prefix = {"dotenv": "D", "dotenv-expand": "X"}.get(fmt, "")
    written: list[Path] = []
    carried: dict[str, str] = {}
    for row, (value, _) in VALUES.items():
        name = f"{prefix}V_{row}"
        refusal = formats.refusals(fmt, {name: value})
        matrix.refused[fmt, row] = refusal[0] if refusal else None
        if refusal:
            continue
        carried[f"{prefix}A_{row}"] = value
        text = formats.render(fmt, {name: value})
        written.append(plan.add(f"{fmt}.{row}", text, {name: value}, row))
    text = formats.render(fmt, carried)
    written.append(plan.add(f"{fmt}.ALL", text, carried, "all table values in one file"))
    fuzzed = {f"{prefix}F{i}": v for i, v in enumerate(fuzz) if not formats.refusals(fmt, {"F": v})}
    text = formats.render(fmt, fuzzed)
    written.append(plan.add(f"{fmt}.FUZZ", text, fuzzed, "all fuzz values in one file"))
    return written


def _plan_spellings(plan: _Plan, fuzz: list[str]) -> dict[Path, tuple[formats.Spelling, str]]:
    """Every table and fuzz value in every dotenv spelling that can hold it."""
    probes: dict[Path, tuple[formats.Spelling, str]] = {}
    rows = [(row, value) for row, (value, _) in VALUES.items()]
    rows += [(f"fuzz {v!r}", v) for v in fuzz]
    for i, (row, value) in enumerate(rows):
        if "\x00" in value:
            continue
        for spelling in formats.SPELLINGS:
            encoded = spelling.encode(value)
            if encoded is None:
                continue
            name = f"S{i}_{spelling.name.replace('-', '_')}"
            text = f"{formats.header('dotenv')}{name}={encoded}\n"
            path = plan.add(f"probe.{i}.{spelling.name}", text, {name: value}, row)
            probes[path] = (spelling, value)
    return probes


def _check(
    matrix: Matrix,
    fmt: str,
    readers: Iterable[Reader],
    files: list[Path],
    plan: _Plan,
    batch: Batch,
) -> None:
    for reader in readers:
        for path in files:
            got = batch[reader.id][path]
            if not _exact(got, plan.expected[path]):
                name = next(iter(plan.expected[path]), "")
                matrix.misreads.append(Misread(fmt, reader.id, plan.label[path], _shown(got, name)))


def run(fuzz_count: int = FUZZ_COUNT) -> Matrix:
    matrix = Matrix()
    fuzz = fuzz_values(fuzz_count)
    with tempfile.TemporaryDirectory(prefix="reader-matrix-") as tmp:
        # dotenv and dotenv-expand files and the spelling probes: one batch for every dotenv reader
        plan = _Plan(Path(tmp))
        own = {fmt: _plan_format(plan, fmt, fuzz, matrix) for fmt in ("dotenv", "dotenv-expand")}
        probes = _plan_spellings(plan, fuzz)
        readers = FORMAT_READERS["dotenv-expand"]
        batch = read_batch(readers, plan.files, plan.names)
        matrix.files_read += len(plan.files) * len(readers)
        for fmt, files in own.items():
            _check(matrix, fmt, FORMAT_READERS[fmt], files, plan, batch)
        exact_somewhere: set[str] = set()
        for path, (spelling, value) in probes.items():
            predicted, _ = spelling.misread_by(value)
            row = plan.label[path]
            all_exact = True
            for reader in readers:
                if _exact(batch[reader.id][path], plan.expected[path]):
                    continue
                if reader in FORMAT_READERS["dotenv"]:
                    all_exact = False
                if not predicted & set(reader.families):
                    got = _shown(batch[reader.id][path], next(iter(plan.expected[path])))
                    what = f"{row} {spelling.name}"
                    matrix.unsound.append(Misread("dotenv", reader.id, what, got))
            if all_exact:
                exact_somewhere.add(row)
        matrix.over_refused = [
            row
            for row in VALUES
            if matrix.refused["dotenv", row] is not None and row in exact_somewhere
        ]
        matrix.over_refused_fuzz = sum(
            1
            for v in fuzz
            if f"fuzz {v!r}" in exact_somewhere and formats.refusals("dotenv", {"F": v})
        )
        for fmt in ("shell", "docker", "json"):
            plan = _Plan(Path(tmp) / fmt)
            plan.dir.mkdir()
            files = _plan_format(plan, fmt, fuzz, matrix)
            batch = read_batch(FORMAT_READERS[fmt], files, plan.names)
            matrix.files_read += len(files) * len(FORMAT_READERS[fmt])
            _check(matrix, fmt, FORMAT_READERS[fmt], files, plan, batch)
    return matrix


# -- the README table --------------------------------------------------------------------------

START = "<!-- reader-matrix: generated by scripts/reader-matrix from tests/readers; do not edit -->"
END = "<!-- reader-matrix: end -->"


def _shown_value(value: str) -> str:
    """The value as a Python literal in a code span (long ones cut)."""
    if len(value) > 40:
        text = f"'x' * {len(value)}" if set(value) == {"x"} else repr(value[:24]) + " ..."
    else:
        text = repr(value)
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def markdown(matrix: Matrix) -> str:
    """The README block: which readers prove each format, then each table value per format."""
    lines = [START, "", "| format | read back byte-exact by |", "| --- | --- |"]
    for fmt, readers in FORMAT_READERS.items():
        lines.append(f"| `{fmt}` | {', '.join(r.id for r in readers)} |")
    lines += ["", "| value | " + " | ".join(f"`{f}`" for f in formats.FORMATS) + " |"]
    lines.append("| --- |" + " --- |" * len(formats.FORMATS))
    for row, (value, _) in VALUES.items():
        cells = []
        for fmt in formats.FORMATS:
            refusal = matrix.refused[fmt, row]
            bad = [m.reader for m in matrix.misreads if m.fmt == fmt and m.what == row]
            if bad:
                cells.append("MISREAD by " + ", ".join(bad))
            elif refusal is None:
                cells.append("exact")
            elif set(refusal.readers) >= set(formats.DOTENV_READERS):
                cells.append("refused (every reader)")
            else:
                cells.append(
                    "refused" + (f" ({', '.join(refusal.readers)})" if refusal.readers else "")
                )
        lines.append(f"| `{row}` {_shown_value(value)} | " + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines)
