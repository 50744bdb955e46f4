"""The X-Loader-Consumer header: written and read back, and every malformed one refused with a
message that names the field, never its text."""

from __future__ import annotations

import pytest

from loader.consumer import MAX_HEADER, Report, ReportError, new_report, parse


@pytest.mark.parametrize(
    ("report", "header"),
    [
        (Report("a1", "agent"), "id=a1;kind=agent;seq=0"),
        (
            Report("r", "runner", "pod-1", "0.1.0", 4, 3, "starting", None, 9),
            "id=r;kind=runner;host=pod-1;version=0.1.0;rendered=4;running=3;health=starting;seq=9",
        ),
        (
            Report("r", "runner", rendered=5, running=4, health="healthy", failed=5, seq=2),
            "id=r;kind=runner;rendered=5;running=4;health=healthy;failed=5;seq=2",
        ),
        (Report("x.y:z-1_2", "render", rendered=0), "id=x.y:z-1_2;kind=render;rendered=0;seq=0"),
    ],
)
def test_header_round_trip(report: Report, header: str) -> None:
    assert report.header() == header
    assert parse(header).header() == header
    assert parse(" " + header.replace(";", " ; ")).header() == header


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind=runner", "id is required"),
        ("id=a", "kind must be one of"),
        ("id=a;kind=robot", "kind must be one of"),
        ("id=a;kind=agent;rendered=-1", "rendered must be a whole number"),
        ("id=a;kind=agent;seq=1e3", "seq must be a whole number"),
        ("id=a;kind=agent;running=٣", "running must be a whole number"),
        ("id=a;kind=agent;rendered=" + "9" * 19, "rendered must be a whole number"),
        ("id=a;kind=agent;health=ok", "health must be one of"),
        ("id=a b;kind=agent", "id: at most 64"),
        ("id=a;kind=agent;host=" + "h" * 254, "host: at most 253"),
        ("id=a;kind=agent;version=1/2", "version: at most 32"),
        ("id=a;kind=agent;token=lt_secret", "unknown field 'token'"),
        ("id=a;kind=agent;kind=runner", "kind given twice"),
        ("id=a;kind=agent;garbage", "expected name=value"),
        ("id=" + "a" * MAX_HEADER, f"longer than {MAX_HEADER}"),
    ],
)
def test_malformed_headers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ReportError) as info:
        parse(text)
    assert message in str(info.value)
    assert "lt_secret" not in str(info.value)


def test_update_counts_changes_and_new_reports_parse() -> None:
    report = new_report("runner")
    assert len(report.id) == 12 and report.kind == "runner" and report.version
    report.update(rendered=3, health="waiting")
    report.update(running=3, health="healthy")
    assert report.seq == 2
    assert parse(report.header()).header() == report.header()
    assert new_report("agent", "given-id").id == "given-id"
