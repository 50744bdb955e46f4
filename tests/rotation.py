"""Rotation journeys: real sources, real agents and stores, real `loader run --watch` runners.

A journey runs two runners on one source at once, one restarting its child on each change and
one only signalling it (``--reload-signal SIGHUP``), and drives the source through:

1. five changes, each waited for (so spaced past the debounce): five restarts and five signals,
   each child (or signalled child, reading its source again) seeing the value just written;
   the source goes away between changes 2 and 3 and comes back; an agent source's agent is
   restarted between changes 4 and 5;
2. ten writes within about 100 ms: one more restart and one more signal, with the last value;
3. a quiet wait, then the whole history is compared: nothing more, nothing less.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from loader import formats
from tests.procs import LiveStore, Proc, free_port, loader_env, start_agent, start_runner
from tests.procs import wait_until as _wait_until

DEBOUNCE = 0.4  # the burst's writes must all land within it of each other, on a busy machine

# The child: reports its start (pid and the A it was started with) and, on SIGHUP, what its
# source holds now (read the way `loader run` reads it, with the flags it is given).
CHILD = """
import os, signal, sys, time
from loader.runner.options import parse
from loader.runner.sources import make_source

log, flags = sys.argv[1], sys.argv[2:]

def report(kind, value):
    with open(log, "a") as f:
        f.write(f"{kind} {os.getpid()} {value}\\n")

def reread(*_):
    report("hup", make_source(parse([*flags, "--", "x"], {}), {}).load().get("A"))

signal.signal(signal.SIGHUP, reread)
report("start", os.environ.get("A"))
while True:
    time.sleep(1)
"""


class Source(Protocol):
    """One kind of source, driven by the journey."""

    flags: list[str]  # how `loader run` (and the child) reach it

    def write(self, value: str) -> None: ...

    def burst(self, values: list[str]) -> None: ...

    def away(self) -> None: ...

    def back(self) -> None: ...

    def restart_agent(self) -> None: ...


# -- the sources ---------------------------------------------------------------------------


class FileByRename:
    """An env file replaced atomically (temp file + rename), as the agent writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.flags = ["--from-file", str(path)]
        self.last = "v0"
        self.write("v0")

    def _put(self, text: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)

    def write(self, value: str) -> None:
        self.last = value
        self._put(formats.render("dotenv", {"A": value}))

    def burst(self, values: list[str]) -> None:
        for value in values:
            self.write(value)
            time.sleep(0.01)

    def away(self) -> None:
        self.path.unlink()

    def back(self) -> None:
        self.write(self.last)

    def restart_agent(self) -> None:
        pass


class FileInPlace(FileByRename):
    """An env file rewritten in place (truncated, then written), as an editor may."""

    def _put(self, text: str) -> None:
        with self.path.open("w") as f:
            f.write(text)


class StoreSource:
    """The store itself (`--store-url` with a token file and the app id)."""

    def __init__(self, tmp_path: Path) -> None:
        self.live = LiveStore.start(tmp_path, "rotation")
        self.live.put("A", "v0")
        self.reveal = self.live.token("secrets:reveal")
        token_file = tmp_path / "reveal.token"
        token_file.write_text(self.reveal)
        self.flags = [
            "--store-url",
            self.live.url,
            "--app",
            str(self.live.app),
            "--token-file",
            str(token_file),
        ]

    def write(self, value: str) -> None:
        self.live.put("A", value)

    def burst(self, values: list[str]) -> None:
        client = self.live.client()  # one kept-alive connection: ten writes in ~100 ms
        try:
            for value in values:
                client.call(
                    "POST",
                    f"/v1/apps/{self.live.app}/environments/default/secrets",
                    {"name": "A", "value": value},
                )
        finally:
            client.close()

    def away(self) -> None:
        self.live.proc.stop()

    def back(self) -> None:
        self.live.restart()  # on the same port

    def restart_agent(self) -> None:
        pass

    def stop(self) -> None:
        self.live.proc.stop()


class AgentSource(StoreSource):
    """A local agent following the store, over TCP or a unix socket. "Away" is the store."""

    def __init__(self, tmp_path: Path, shm: Path, transport: str) -> None:
        super().__init__(tmp_path)
        self.listen = (
            f"unix:{shm / 'agent.sock'}" if transport == "unix" else f"127.0.0.1:{free_port()}"
        )
        self.log = tmp_path / "agent.log"
        self.output = shm / "agent.env"
        self.agent = self._start_agent()
        url = self.listen if transport == "unix" else f"http://{self.listen}"
        self.flags = ["--agent-url", url]

    def _start_agent(self) -> Proc:
        return start_agent(
            self.log,
            "--output",
            str(self.output),
            "--listen",
            self.listen,
            env=loader_env(
                LOADER_STORE_URL=self.live.url,
                LOADER_TOKEN=self.reveal,
                LOADER_APP=str(self.live.app),
            ),
        )

    def restart_agent(self) -> None:
        self.agent.stop()
        self.agent = self._start_agent()

    def stop(self) -> None:
        self.agent.stop()
        super().stop()


# -- the journey ---------------------------------------------------------------------------


class Runner:
    def __init__(self, tmp_path: Path, source: Source, mode: str) -> None:
        self.mode = mode
        self.log = tmp_path / f"child-{mode}.log"
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        watch = ["--watch", "--debounce", str(DEBOUNCE), "--grace", "2s"]
        if mode == "reload":
            watch += ["--reload-signal", "SIGHUP"]
        child = [sys.executable, str(script), str(self.log), *source.flags]
        self.proc = start_runner(
            tmp_path / f"runner-{mode}.log",
            [*watch, *source.flags],
            child,
            env=loader_env(LOADER_LOG_LEVEL="info"),
        )

    def events(self) -> list[tuple[str, str]]:
        """(kind, value) for each start and each SIGHUP, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(kind, value) for kind, _, value in (line.split(" ", 2) for line in lines)]

    def seen(self, value: str) -> bool:
        want = "start" if self.mode == "restart" else "hup"
        return (want, value) in self.events()

    def expected(self, values: list[str]) -> list[tuple[str, str]]:
        kind = "start" if self.mode == "restart" else "hup"
        return [("start", "v0"), *((kind, v) for v in values)]

    def state(self) -> str:
        return f"{self.mode}: events {self.events()}; runner log: {self.proc.logs()[-1500:]}"


def journey(tmp_path: Path, source: Source) -> None:
    """Steps 1-3 of the module docstring, for both modes at once."""
    with ExitStack() as stack:
        runners = [Runner(tmp_path, source, mode) for mode in ("restart", "reload")]
        for runner in runners:
            stack.callback(runner.proc.stop, signal.SIGTERM)

        def wait_for(value: str, what: str) -> None:
            for runner in runners:
                try:
                    _wait_until(lambda r=runner: r.seen(value), timeout=30, what=what)  # type: ignore[misc]
                except AssertionError:
                    raise AssertionError(f"{what}: {runner.state()}") from None

        for runner in runners:
            _wait_until(lambda r=runner: r.events()[:1] == [("start", "v0")], what="first child")  # type: ignore[misc]
        values = [f"v{i}" for i in range(1, 6)]
        for i, value in enumerate(values, start=1):
            if i == 3:
                source.away()
                time.sleep(1.0)  # long enough for every follower to notice and back off
                source.back()
            if i == 5:
                source.restart_agent()
            source.write(value)
            wait_for(value, f"change {i}")
        burst = [f"b{i}" for i in range(10)]
        source.burst(burst)
        wait_for(burst[-1], "the burst's last value")
        time.sleep(DEBOUNCE * 2 + 0.5)  # room for any restart that should not happen
        for runner in runners:
            assert runner.events() == runner.expected([*values, burst[-1]]), runner.state()
            assert runner.proc.proc.poll() is None, runner.state()
            assert "Traceback" not in runner.proc.logs(), runner.state()


@contextmanager
def stopping(source: StoreSource) -> Iterator[StoreSource]:
    try:
        yield source
    finally:
        source.stop()
