"""docker's ``--env-file`` parser, transcribed as a test oracle (no docker engine runs here).

Transcribed from docker/cli ``pkg/kvfile/kvfile.go`` (``parseKeyValueFile``, formerly
``opts/file.go``; moby's older ``opts/envfile.go`` had the same line rules): the file is split
like Go's ``bufio.Scanner`` with ``ScanLines`` (lines end at LF, one trailing CR is dropped, a
line of 64 KiB or more is ``bufio.Scanner: token too long``); each line must be valid UTF-8; a
BOM is dropped from the first line; leading ``unicode.IsSpace`` characters are trimmed; empty
lines and lines starting with ``#`` are skipped; the name is everything before the first ``=``
(it must be non-empty and hold no space or tab) and the value is the rest of the line, as is --
no quote, escape or ``$`` processing. A line without ``=`` takes the variable from docker's own
environment, or is dropped when it has none (here: always dropped).
"""

from __future__ import annotations

MAX_SCAN_TOKEN = 64 * 1024  # bufio.MaxScanTokenSize
# Go's unicode.IsSpace: the Latin-1 spaces it lists, then Unicode's White_Space property.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _scan_lines(data: bytes) -> list[bytes]:
    lines: list[bytes] = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        stop = len(data) if end < 0 else end
        # the scanner's buffer (64 KiB) must hold the line and its newline
        if stop - start + (0 if end < 0 else 1) > MAX_SCAN_TOKEN:
            raise ValueError("bufio.Scanner: token too long")
        line = data[start:stop]
        lines.append(line[:-1] if line.endswith(b"\r") else line)
        start = stop + 1
    return lines


def parse_env_file(data: bytes) -> list[tuple[str, str]]:
    """``NAME=value`` pairs in file order (docker passes them on in that order)."""
    out: list[tuple[str, str]] = []
    for number, raw in enumerate(_scan_lines(data), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"invalid utf8 bytes at line {number}") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        line = text.lstrip("".join(GO_SPACE))
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not name:
            raise ValueError(f"no variable name on line {number}")
        if " " in name or "\t" in name:
            raise ValueError(f"variable on line {number} contains whitespaces")
        if sep:
            out.append((name, value))
    return out
