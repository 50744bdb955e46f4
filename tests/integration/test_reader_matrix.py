"""The reader matrix: every hostile value, in every format, read back byte-exact by every real
reader, or refused by the writer naming the secret and the reader that would misread it.

Every reader is installed by ``.ci/run``; a missing one fails here (ReaderMissingError), it does
not skip. The matrix runs once for the module (all readers in batches, a few seconds).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loader import formats
from tests.readers import ReaderMissingError, matrix
from tests.readers.values import VALUES

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def result() -> matrix.Matrix:
    return matrix.run()


def test_every_written_value_reads_back_exactly(result: matrix.Matrix) -> None:
    assert result.files_read > 1000  # every reader read every file
    assert result.misreads == []


def test_the_writers_table_of_misreads_is_never_wrong(result: matrix.Matrix) -> None:
    """Every spelling of every value that loader.formats.SPELLINGS says a reader reads exactly,
    that reader really reads exactly (checked over the table and the fuzz values)."""
    assert result.unsound == []


def test_dotenv_refuses_only_what_no_spelling_carries(result: matrix.Matrix) -> None:
    """A table value the dotenv writer refuses is misread by some reader in every spelling."""
    assert result.over_refused == []


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_the_writer_refuses_exactly_the_tables_refusals(result: matrix.Matrix, fmt: str) -> None:
    refused = {row for row in VALUES if result.refused[fmt, row] is not None}
    expected = {row for row, (_, refused_by) in VALUES.items() if fmt in refused_by}
    assert refused == expected


def test_refusals_name_the_secret_and_the_readers(result: matrix.Matrix) -> None:
    dotenv_refusals = [r for (fmt, _), r in result.refused.items() if fmt == "dotenv" and r]
    assert dotenv_refusals
    for refusal in dotenv_refusals:
        assert refusal.name.startswith("DV_")
        if refusal.why != "a NUL character, which no environment variable holds":
            assert refusal.readers and set(refusal.readers) <= set(formats.DOTENV_READERS)


def test_readme_shows_the_matrix_as_it_came_out(result: matrix.Matrix) -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(re.escape(matrix.START) + ".*?" + re.escape(matrix.END), text, re.S)
    assert found, "README.md has no reader matrix: run scripts/reader-matrix --write"
    assert found.group(0) == matrix.markdown(result), "run scripts/reader-matrix --write"


def test_a_missing_reader_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import readers

    monkeypatch.setitem(readers.CLEAN_ENV, "PATH", "/nonexistent")
    with pytest.raises(ReaderMissingError, match=r"bash \.ci/run"):
        readers.read_batch(readers.SHELL_READERS, [], lambda p: set())
