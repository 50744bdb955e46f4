"""The agent's lifecycle: build every part from the settings (all checks before any network
call), follow the store, render, serve locally, and stop cleanly on SIGTERM/SIGINT.

``render_once`` is the init-container mode: fetch, render, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from loader import reloads
from loader.agent.follower import Follower
from loader.agent.local_api import create_local_app
from loader.agent.metrics import AgentMetrics
from loader.agent.presented import AgentState
from loader.agent.renderer import Renderer, RenderResult
from loader.agent.snapshot import Snapshot
from loader.agent.storeclient import StoreClient
from loader.agent.tokens import ExchangedTokens, TokenSource
from loader.backoff import Backoff, Deadline, keep_running
from loader.consumer import new_report
from loader.credentials import without_credentials
from loader.errors import (
    ConfigError,
    InsufficientScopeError,
    NotFoundError,
    UnauthorizedError,
    UnrenderableError,
)
from loader.fsguard import check_socket_path
from loader.fswatch import watch_file
from loader.listener import bind_tcp, bind_unix
from loader.serving import serve
from loader.settings import AgentSettings
from loader.settingtypes import Listen
from loader.templatefiles import TemplateFile, TemplateSet

log = logging.getLogger("loader.agent")

RenderHook = Callable[[Snapshot, RenderResult], None]


class Agent:
    def __init__(self, settings: AgentSettings, on_render: RenderHook | None = None) -> None:
        self.settings = settings
        self.tokens: TokenSource | ExchangedTokens
        if settings.auth == "jwt":
            self.tokens = ExchangedTokens(settings.jwt_file)
        else:
            token = settings.token.get_secret_value() if settings.token is not None else None
            self.tokens = TokenSource(token, settings.token_file)
        self.renderer = Renderer(
            output=settings.output,
            fmt=settings.format,
            templates=TemplateSet(
                settings.template_targets,
                fmt=settings.template_format,
                spelling=settings.template_spelling,
                allow_disk=settings.allow_disk,
            ),
            allow_disk=settings.allow_disk,
        )
        self.state = AgentState(settings.max_stale)
        self.metrics = AgentMetrics(self.state)
        self.listen = settings.listen_address
        if self.listen is not None and self.listen.path is not None:
            _check_socket_path(self.listen.path)
        self.on_render = on_render
        self.latest: Snapshot | None = None
        self.bound: str | None = None
        self.moved_from: int | None = None  # loader dev: the port asked for, when taken
        self._on_change_running = False
        self._on_change_again = False
        self._background: set[asyncio.Task[None]] = set()
        self._missing: list[str] = []
        self._applied: dict[str, str] | None = None  # the values the files show
        self._edited: TemplateFile | None = None  # a template whose text changed
        self.report = new_report("agent")

    def client(self, kind: str = "agent") -> StoreClient:
        s = self.settings
        self.report.kind = kind  # what it says about itself on each request (loader.consumer)
        client = StoreClient(
            s.store_url,
            s.app,
            s.environment,
            names=s.name_filter,
            ca_file=s.ca_file,
            report=self.report,
        )
        if isinstance(self.tokens, ExchangedTokens):
            self.tokens.exchange = client.exchange
        return client

    # -- rendering -------------------------------------------------------------------------

    def missing_names(self, snapshot: Snapshot) -> list[str]:
        """``--names`` secrets the snapshot has no value for (absent, or declared only)."""
        return [n for n in self.settings.name_filter or () if n not in snapshot.values]

    async def apply(self, snapshot: Snapshot, *, log_failure: bool = True) -> RenderResult:
        """Render ``snapshot``; a failure is logged unless the caller reports it itself."""
        self.latest = snapshot
        missing = self.missing_names(snapshot)
        if missing != self._missing:
            self._missing = missing
            if missing:
                log.warning(
                    "--names: not set in app %s / %s: %s",
                    self.settings.app,
                    self.settings.environment,
                    ", ".join(missing),
                )
        result = self.renderer.render(snapshot)
        if not result.ok:
            message = "; ".join(result.errors)
            self.state.failed(message)
            self.metrics.errors.labels("render").inc()
            if log_failure:
                log.error(
                    "render of revision %d failed, keeping the last good files: %s",
                    snapshot.revision,
                    message,
                )
        else:
            self.state.rendered_ok(snapshot)
            if snapshot.revision != self.report.rendered:
                self.report.update(rendered=snapshot.revision)
            self.metrics.revision.set(snapshot.revision)
            for path in result.written:
                self.metrics.renders.labels(path.name).inc()
            if result.written:
                log.info(
                    "revision %d: %d secret(s) [%s] -> %s",
                    snapshot.revision,
                    len(snapshot.values),
                    ", ".join(snapshot.names),
                    ", ".join(str(p) for p in result.written),
                )
                decision = self.decide(snapshot)
                log.info("revision %d: %s", snapshot.revision, decision.line)
                if decision.restart:
                    self._spawn(self._on_change())
            self._applied, self._edited = dict(snapshot.values), None
        if self.on_render is not None:
            self.on_render(snapshot, result)
        return result

    def decide(self, snapshot: Snapshot) -> reloads.Decision:
        """Whether the files just written need --on-change (:mod:`loader.reloads`)."""
        policy = self.settings.restart
        if self._edited is not None:
            return reloads.decide_edit(str(self._edited.source), policy)
        if self._applied is None:
            return reloads.decide_unknown(policy)
        changed = reloads.changed_names(self._applied, snapshot.values)
        return reloads.decide(changed, self.renderer.routes(snapshot.names), policy)

    async def _apply(self, snapshot: Snapshot) -> None:
        await self.apply(snapshot)

    async def _on_change(self) -> None:
        """Run --on-change after a write; a write during a run queues one more run."""
        command = self.settings.on_change
        if not command:
            return
        if self._on_change_running:
            self._on_change_again = True
            return
        self._on_change_running = True
        try:
            while True:
                self._on_change_again = False
                env = without_credentials(os.environ)
                try:
                    proc = await asyncio.create_subprocess_shell(command, env=env)
                    code = await proc.wait()
                except OSError as exc:
                    log.error("--on-change command could not run: %s", exc.strerror or exc)
                    code = 0
                if code != 0:
                    log.warning("--on-change command exited with %d", code)
                if not self._on_change_again:
                    break
        finally:
            self._on_change_running = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _template_watcher(self, one: TemplateFile) -> Callable[[], Coroutine[Any, Any, None]]:
        async def watch() -> None:
            async for _ in watch_file(one.source):
                if self.renderer.reload_template(one):
                    log.info("template %s changed; re-rendering", one.source)
                    if self.latest is not None:
                        self._edited = one
                        await self.apply(self.latest)

        return watch

    # -- the daemon ------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Future[Any] | asyncio.Event, sock: socket.socket | None = None
    ) -> None:
        """Follow and serve until ``stop``; ``sock`` is the local endpoint bound by the caller
        (else the agent binds its ``listen`` address)."""
        s = self.settings
        # The local endpoint's address first: one taken is one line and exit 69 before the
        # agent has said or fetched anything.
        if sock is None and self.listen is not None:
            sock = listen_socket(self.listen)
        log.info(
            "following app %s / %s at %s (long-poll %gs)",
            s.app,
            s.environment,
            s.store_url,
            s.wait,
        )
        async with self.client() as client, self.serving(sock):
            follower = Follower(
                client,
                self.tokens,
                self.state,
                self.metrics,
                self._apply,
                wait=s.wait,
                backoff=Backoff(s.backoff_initial, s.backoff_max),
            )
            # Each part runs for as long as the agent does: one that ends or fails is logged
            # and started again with backoff (it never just stops, silently or with the agent).
            parts = {
                "following the store": (follower.run, Backoff(s.backoff_initial, s.backoff_max)),
                "watching the token file": (self.tokens.watch, Backoff(1.0, 30.0)),
            }
            for one in self.renderer.template_files:
                parts[f"watching the template {one.source}"] = (
                    self._template_watcher(one),
                    Backoff(1.0, 30.0),
                )
            tasks = [
                asyncio.create_task(keep_running(name, part, backoff, log), name=name)
                for name, (part, backoff) in parts.items()
            ]
            waiter = asyncio.ensure_future(stop.wait() if isinstance(stop, asyncio.Event) else stop)
            try:
                await waiter
            finally:
                waiter.cancel()
                for part in tasks:
                    part.cancel()
                for part in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await part
                for task in list(self._background):
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, timeout=5)
        log.info("agent stopped")

    @asynccontextmanager
    async def serving(self, sock: socket.socket | None) -> AsyncIterator[None]:
        if self.listen is None or sock is None:
            yield
            return
        app = create_local_app(self.state, self.metrics)
        host = self.listen.host
        try:
            async with serve(app, sock, host, access_log=None, shutdown_timeout=1.0) as url:
                self.bound = url
                print(f"loader agent listening on {self.bound}", flush=True)
                yield
        finally:
            sock.close()
            if self.listen.path is not None:
                _remove_own_socket(self.listen.path)

    # -- init-container mode ---------------------------------------------------------------

    async def render_once(self, timeout: float) -> RenderResult:
        """Fetch and render once, retrying unreachable/limited stores until ``timeout``.

        Raises the error that decides the exit code: 77 token refused, 69 store unreachable,
        65 a value or template that cannot be rendered.
        """
        deadline = Deadline(
            timeout, Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        )
        async with self.client("render") as client:
            while True:
                try:
                    snapshot = await client.fetch(await self.tokens.current(), None, 0)
                    assert snapshot is not None
                    break
                except (UnauthorizedError, InsufficientScopeError):
                    raise
                except Deadline.RETRIED as exc:
                    delay = deadline.delay(exc)
                    log.warning("%s; retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
        missing = self.missing_names(snapshot)
        if missing:  # an init container that renders less than asked for must not pass
            raise NotFoundError(
                f"--names: not set in app {self.settings.app} / {self.settings.environment}: "
                f"{', '.join(missing)}; nothing written"
            )
        result = await self.apply(snapshot, log_failure=False)  # the exit message says it once
        if not result.ok:
            raise UnrenderableError("; ".join(result.errors))
        return result


def _check_socket_path(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError(f"socket directory {path.parent} does not exist")
    check_socket_path(path)


def _remove_own_socket(path: Path) -> None:
    """At shutdown: remove the socket only if it is still a socket of ours."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            path.unlink()


def listen_socket(listen: Listen) -> socket.socket:
    if listen.path is not None:
        check_socket_path(listen.path)  # another user's socket or file there is refused
        return bind_unix(listen.path)
    return bind_tcp(listen.host, listen.port)
