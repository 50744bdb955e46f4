"""The file events each way of writing a spicepod produces, as the ``notify`` crate reports them
(through ``watchfiles``, which wraps the crate the Spice runtime's pods watcher uses).

The runtime v1.0 counts create, delete and data-modify events; a rename is a name event it may
miss. Newer runtimes count any modify. The write loader uses must be atomic for readers *and*
produce a data-modify on ``spicepod.yaml``:

====================  ===========================================  ======================
strategy              events on spicepod.yaml                      atomic for readers
====================  ===========================================  ======================
in place (truncate)   Modify(Data)                                 no (empty, then part)
temp + rename         Modify(Name(To))                             yes
loader's atomic_write Modify(Name(To)), then Modify(Data)          yes
====================  ===========================================  ======================

``watchfiles`` folds the events of one batch per path (a data-modify right after a rename is
dropped from the batch that already holds the path as added), which the runtime's own handler
does not. So each strategy here pauses after its rename until the watcher has reported it: the
events after it then arrive in a batch of their own.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchfiles import Change, watch

from loader.fsio import atomic_write

RAW = re.compile(r"raw-event[=:] ?Event \{ kind: (?P<kind>.*?), paths: \[\"(?P<path>[^\"]*)\"")
PAUSE = 0.4  # longer than the watcher's batch (debounce 50 ms, step 10 ms) on a busy machine


def in_place(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def rename_only(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def loaders(path: Path, data: bytes) -> None:
    atomic_write(path, data)


STRATEGIES: dict[str, Callable[[Path, bytes], None]] = {
    "in place": in_place,
    "temp + rename": rename_only,
    "atomic_write": loaders,
}


@pytest.fixture
def slow_rename(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each rename, then a pause: the events after it land in a watcher batch of their own."""
    replace = os.replace

    def paused(src: object, dst: object) -> None:
        replace(src, dst)  # type: ignore[arg-type]
        time.sleep(PAUSE)

    monkeypatch.setattr(os, "replace", paused)
    yield


def events_of(
    strategy: Callable[[Path, bytes], None], directory: Path, capfd: pytest.CaptureFixture[str]
) -> tuple[list[tuple[str, str]], set[Change]]:
    """(notify's raw event kinds on spicepod.yaml, watchfiles' changes to it) for one write."""
    target = directory / "spicepod.yaml"
    target.write_bytes(b"version: v1\nkind: Spicepod\nname: old\n")
    stop = threading.Event()
    changes: set[Change] = set()
    ready = threading.Event()

    def follow() -> None:
        for batch in watch(
            directory,
            debug=True,
            debounce=50,
            step=10,
            stop_event=stop,
            yield_on_timeout=True,
            rust_timeout=100,
        ):
            ready.set()
            changes.update(change for change, path in batch if path == str(target))

    thread = threading.Thread(target=follow)
    thread.start()
    ready.wait(5)
    capfd.readouterr()
    strategy(target, b"version: v1\nkind: Spicepod\nname: new\n")
    time.sleep(PAUSE)
    stop.set()
    thread.join(5)
    out = capfd.readouterr()
    raw = [
        (m["kind"], Path(m["path"]).name)
        for m in RAW.finditer(out.out + out.err)
        if Path(m["path"]).name == target.name
    ]
    return raw, changes


@pytest.mark.usefixtures("slow_rename")
def test_each_write_strategy_and_the_events_it_produces(
    shm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    found = {name: events_of(strategy, shm, capfd) for name, strategy in STRATEGIES.items()}
    with capfd.disabled():
        for name, (raw, changes) in found.items():
            print(f"\n{name:14} notify: {[k for k, _ in raw]}  watchfiles: {sorted(changes)}")

    raw, changes = found["in place"]
    assert "Modify(Data(Any))" in [k for k, _ in raw] and Change.modified in changes

    raw, changes = found["temp + rename"]
    assert [k for k, _ in raw] == ["Modify(Name(To))"]
    assert changes == {Change.added}  # no data-modify: a v1.0 runtime may not reload

    raw, changes = found["atomic_write"]
    kinds = [k for k, _ in raw]
    assert kinds[0] == "Modify(Name(To))" and "Modify(Data(Any))" in kinds[1:]
    assert changes == {Change.added, Change.modified}


def test_atomic_write_is_atomic_for_readers(shm: Path) -> None:
    """A reader polling the file while it is rewritten 300 times only ever sees a whole
    version (never empty, never part of one): the extra write repeats a byte in place."""
    target = shm / "spicepod.yaml"
    versions = [f"name: v{i}\n".encode() * (1 + i % 7) * 200 for i in range(300)]
    atomic_write(target, versions[0])
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for data in versions[1:]:
            atomic_write(target, data)
    finally:
        done.set()
        reader.join()
    assert seen and seen <= set(versions)
