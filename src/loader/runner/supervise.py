"""``loader run --watch`` / ``--mask``: stay as the command's parent.

* The child gets SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT and SIGWINCH as they arrive.
* With ``--watch``, changes are followed (long-poll on the agent or store, inotify on a file) by
  one long-lived task (:mod:`loader.runner.changes`); when the child's environment really
  changes (sorted, compared with the last, debounced, then after a random ``--splay`` delay) the
  child is restarted: ``--restart-signal`` (SIGTERM), ``--grace`` (10 s), then SIGKILL; or, with
  ``--reload-signal``, only signalled (the app then re-reads its secrets itself). Every change
  is acted on, the hundredth as the first.
* The runner exits with the child's exit code (128+N when signal N killed it). When the runner
  gets SIGTERM or SIGINT it passes it on and, if the child outlives ``--grace``, kills it; if the
  runner dies abruptly the kernel kills the child (``PR_SET_PDEATHSIG``): no orphan, no zombie.
* With ``--mask``, the child's stdout and stderr pass through :class:`~loader.runner.mask.Masker`
  (through a pty when ours is a terminal, so the child keeps its line buffering).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import random
import signal
import sys
from typing import IO

from loader import reloads
from loader.backoff import Backoff, keep_running
from loader.errors import LoaderError, UsageError
from loader.hardening import harden_process, restore_core_limit
from loader.runner.changes import follow_into, latest, settle
from loader.runner.command import child_env, resolve
from loader.runner.mask import Masker
from loader.runner.options import RunOptions
from loader.runner.rollout import Rollout, revision_of
from loader.runner.sources import AgentSource, FileSource, StoreSource
from loader.settingtypes import LOG_LEVELS, RESTART_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from loader.runner.templates import RunTemplates

log = logging.getLogger("loader.run")
Source = FileSource | AgentSource | StoreSource

FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
    signal.SIGWINCH,
)
PR_SET_PDEATHSIG = 1


def parse_signal(text: str) -> signal.Signals:
    name = text.strip().upper()
    if name.isdigit():
        with contextlib.suppress(ValueError):
            return signal.Signals(int(name))
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return signal.Signals[name]
    raise UsageError(f"run: unknown signal {text!r}")


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    restore_core_limit()


class Supervisor:
    def __init__(
        self, opts: RunOptions, source: Source, templates: RunTemplates | None = None
    ) -> None:
        self.opts = opts
        self.source = source
        self.templates = templates
        self.policy = opts.choice("restart", RESTART_POLICIES)
        self.command = opts.command
        self.restart_signal = parse_signal(opts.get("restart_signal") or "")
        reload = opts.get("reload_signal")
        self.reload_signal = parse_signal(reload) if reload else None
        self.grace = opts.duration("grace")
        self.debounce = opts.duration("debounce")
        self.splay = opts.duration("splay")
        self.child: asyncio.subprocess.Process | None = None
        self.env: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.running: int | None = None  # the store revision the child started with
        self.stopping = False
        self.restarting = False
        self.restarted = asyncio.Event()
        self.failure: LoaderError | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self.rollout = Rollout(
            source,
            consumer_id=opts.get("consumer_id"),
            ready_check=opts.get("ready_check"),
            min_ready=opts.duration("min_ready"),
            ready_timeout=opts.duration("ready_timeout"),
        )

    # -- the child -------------------------------------------------------------------------

    async def start(self, values: dict[str, str], env: dict[str, str]) -> None:
        path = resolve(self.command[0], env)
        self.values, self.env = values, env
        masked = self.opts.on("mask")
        stdio: list[int | None] = []  # what the child writes to
        masters: list[int | None] = []  # the pty side we read, when there is one
        stream: IO[str]
        for stream in (sys.stdout, sys.stderr):
            if not masked:
                stdio.append(None)
                masters.append(None)
            elif stream.isatty():
                import pty

                master_fd, slave_fd = pty.openpty()
                stdio.append(slave_fd)
                masters.append(master_fd)
            else:
                stdio.append(asyncio.subprocess.PIPE)
                masters.append(None)
        self.child = await asyncio.create_subprocess_exec(
            path,
            *self.command[1:],
            env=env,
            stdout=stdio[0],
            stderr=stdio[1],
            preexec_fn=_die_with_parent,
        )
        for child_end, master in zip(stdio, masters, strict=True):
            if master is not None and child_end is not None:
                os.close(child_end)  # the child holds the pty slave now
        if masked:
            masker = Masker(values.values())
            pipes = (self.child.stdout, self.child.stderr)
            sinks = (sys.stdout.buffer, sys.stderr.buffer)
            self._pumps = [
                asyncio.create_task(
                    self._pump(masker, master if master is not None else pipe, sink)
                )
                for master, pipe, sink in zip(masters, pipes, sinks, strict=True)
            ]
        log.info("started %s (pid %d)", self.command[0], self.child.pid)

    async def _pump(
        self, masker: Masker, source: asyncio.StreamReader | int | None, sink: IO[bytes]
    ) -> None:
        reader = source if isinstance(source, asyncio.StreamReader) else await _reader(source)
        while True:
            try:
                chunk = await reader.read(65536)
            except OSError:  # EIO from a pty master once the child side closed
                chunk = b""
            if not chunk:
                break
            out = masker.feed(chunk)
            if out:
                sink.write(out)
                sink.flush()
        tail = masker.flush()
        if tail:
            sink.write(tail)
            sink.flush()

    async def _drain(self) -> None:
        for task in self._pumps:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        self._pumps = []

    async def stop_child(self, sig: signal.Signals) -> int:
        """Send ``sig``; SIGKILL after ``grace``. Returns the exit status."""
        child = self.child
        assert child is not None
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
            try:
                await asyncio.wait_for(child.wait(), self.grace)
            except TimeoutError:
                self._kill(child)
                await child.wait()
        await self._drain()
        assert child.returncode is not None
        return child.returncode

    def _kill(self, child: asyncio.subprocess.Process) -> None:
        if child.returncode is None:
            log.warning("%s outlived the %gs grace; killing it", self.command[0], self.grace)
            with contextlib.suppress(ProcessLookupError):
                child.kill()

    # -- signals ---------------------------------------------------------------------------

    def forward(self, sig: signal.Signals) -> None:
        child = self.child
        if child is None or child.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        if sig in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.stopping = True
            asyncio.get_running_loop().call_later(self.grace, self._kill_if_alive)

    def _kill_if_alive(self) -> None:
        if self.child is not None:
            self._kill(self.child)

    # -- changes ---------------------------------------------------------------------------

    async def follow(self) -> None:
        """Act on every settled change for as long as the runner runs (see ``changes``)."""
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        follower = follow_into(self.source, queue)
        try:
            while True:
                values = await settle(queue, self.debounce)
                step = self.plan(values)
                if step is None:
                    continue
                if self.splay > 0 and step[2].restart:
                    delay = random.uniform(0, self.splay)
                    log.info("secrets changed; acting in %.1fs (--splay)", delay)
                    await asyncio.sleep(delay)
                    step = self.plan(latest(queue, values))
                if step is not None and step[2].restart and self.reload_signal is None:
                    # The restart budget: wait for a slot (the newest values meanwhile win).
                    slot = await self.rollout.slot(
                        lambda v: latest(queue, v), step[0], lambda: self.stopping
                    )
                    step = self.plan(slot) if slot is not None else None
                    if step is not None and not step[2].restart:  # (no restart after all)
                        await self.apply(*step)
                        revision = revision_of(step[0])
                        await self.rollout.done(revision, False, revision)
                        continue
                if step is not None:
                    await self.apply(*step)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    def plan(
        self, values: dict[str, str]
    ) -> tuple[dict[str, str], dict[str, str], reloads.Decision] | None:
        """What a change to ``values`` needs: the child's new environment and the decision
        (:mod:`loader.reloads`): restart when a changed secret reaches the child's environment,
        or a template part the runtime reads once; None when nothing is to be done."""
        try:
            env = child_env(self.opts, os.environ, values)
        except LoaderError as exc:
            log.error("keeping the running command: %s", exc)
            return None
        changed = reloads.changed_names(self.values, values)
        if not changed:
            return None
        prefix = self.opts.get("prefix") or ""
        in_env = [n for n in changed if env.get(prefix + n) != self.env.get(prefix + n)]
        routes = self.templates.routes() if self.templates is not None else {}
        decision = reloads.decide(
            changed, reloads.merge(reloads.environment(in_env), routes), self.policy
        )
        if decision.action == "none":
            if self.templates is not None:
                log.info("%s", decision.line)
            self.values = values
            return None
        return values, env, decision

    async def apply(
        self, values: dict[str, str], env: dict[str, str], decision: reloads.Decision
    ) -> None:
        if self.stopping:
            return
        if self.templates is not None:
            try:
                self.templates.write(values)
            except LoaderError as exc:
                log.error("keeping the running command and the last good files: %s", exc)
                return
        log.info("%s", decision.line)
        revision = revision_of(values)
        if not decision.restart:
            self.values = values  # the files carry it; the child keeps its environment
            self.rollout.reported(rendered=revision, running=revision, health="healthy")
            return
        if self.reload_signal is not None:
            self.values, self.env = values, env
            log.info("secrets changed; sending %s", self.reload_signal.name)
            if self.child is not None and self.child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.child.send_signal(self.reload_signal)
            self.rollout.reported(rendered=revision, running=revision, health="healthy")
            return
        log.info("secrets changed; restarting %s", self.command[0])
        previous = (self.values, self.env)
        self.restarting = True
        self.restarted.clear()
        try:
            await self.stop_child(self.restart_signal)
            if not self.stopping:
                await self.start(values, env)
                await self._settle(previous, revision)
        except LoaderError as exc:
            self.failure = exc  # the command is gone (deleted, no longer executable)
        finally:
            self.restarting = False
            self.restarted.set()

    async def _settle(
        self, previous: tuple[dict[str, str], dict[str, str]], revision: int | None
    ) -> None:
        """The new child healthy: the slot goes back. Not: the previous secrets again."""
        assert self.child is not None
        problem = await self.rollout.settle(self.child, revision)
        if self.stopping:
            problem = None  # it was stopped, not failed
        if problem is not None:
            log.error(
                "%s did not become healthy (%s); going back to the previous secrets",
                self.command[0],
                problem,
            )
            await self.stop_child(self.restart_signal)
            await self.start(previous[0], previous[1])
        else:
            self.running = revision
        await self.rollout.done(revision, problem is not None, self.running)

    # -- main ------------------------------------------------------------------------------

    async def run(self) -> int:
        values = await asyncio.to_thread(self.source.load)
        if self.templates is not None:
            self.templates.write(values)
        await self.start(values, child_env(self.opts, os.environ, values))
        self.running = revision_of(values)
        self.rollout.reported(rendered=self.running, running=self.running, health="healthy")
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self.forward, sig)
        follower = None
        if self.opts.on("watch"):
            follower = asyncio.create_task(
                keep_running("watching for changes", self.follow, Backoff(0.5, 15.0), log)
            )
        try:
            while True:
                child = self.child
                assert child is not None
                await child.wait()
                if self.restarting:
                    await self.restarted.wait()
                if self.failure is not None:
                    raise self.failure
                if self.child is not child:
                    continue  # restarted: supervise the new one
                await self._drain()
                assert child.returncode is not None
                return exit_code(child.returncode)
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(BaseException):
                    await follower
            for sig in FORWARDED:
                loop.remove_signal_handler(sig)
            if self.child is not None and self.child.returncode is None:
                self.child.kill()
                await self.child.wait()


async def _reader(fd: int | None) -> asyncio.StreamReader:
    assert fd is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader


def supervise(opts: RunOptions, source: Source, templates: RunTemplates | None = None) -> int:
    harden_process(keep_hard_core_limit=True)
    level = opts.choice("log_level", LOG_LEVELS).upper()
    logging.basicConfig(
        level=getattr(logging, level),
        format="loader run: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    return asyncio.run(Supervisor(opts, source, templates).run())
