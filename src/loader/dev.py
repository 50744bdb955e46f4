"""``loader dev``: the whole product on one machine, like ``vault server -dev``.

An embedded SQLite store in a temporary directory with a generated master key and a demo app
with a few secrets; an agent rendering the app's env file and a demo spicepod into tmpfs; and a
demo process under ``loader run --watch --mask`` fed by the agent. The admin token and URLs are
printed; it runs until Ctrl-C and then removes everything it created.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from loader.agent.daemon import Agent
from loader.agent.renderer import RenderResult
from loader.agent.snapshot import Snapshot
from loader.crypto import Keyring
from loader.errors import AddressInUseError, ConfigError
from loader.listener import bind_tcp, bound_port
from loader.server.app import create_app, serving, store_state
from loader.server.settings import StoreSettings
from loader.settings import AgentSettings
from loader.store.auth import issue_token
from loader.store.keyfile import StaticKeyring, write_key_file
from loader.store.models import AuditEvent, utcnow
from loader.store.service import StoreService

log = logging.getLogger("loader.dev")

DEMO_APP = "demo"


def demo_secrets() -> dict[str, str]:
    password = secrets.token_urlsafe(12)
    return {
        "DATABASE_URL": f"postgres://demo:{password}@localhost:5432/demo",
        "API_KEY": "sk-demo-" + secrets.token_hex(16),
        "GREETING": "hello from loader",
    }


@dataclass
class DevStore:
    url: str
    admin_token: str
    agent_token: str
    app_id: int
    data_dir: Path
    moved_from: int | None = None  # the port asked for, when it was taken


def bind_or_free(port: int) -> tuple[socket.socket, int | None]:
    """A socket on 127.0.0.1:``port``, or on a free port when that one is taken (then the
    port asked for is returned too, so the banner can say it moved)."""
    try:
        return bind_tcp("127.0.0.1", port), None
    except AddressInUseError:
        return bind_tcp("127.0.0.1", 0), port


@asynccontextmanager
async def dev_store(port: int = 8700, data_dir: Path | None = None) -> AsyncIterator[DevStore]:
    """A throwaway store with a demo app, served on ``port`` (or a free one if taken)."""
    owned = data_dir is None
    directory = data_dir or Path(tempfile.mkdtemp(prefix="loader-dev-"))
    directory.chmod(0o700)
    keyring = Keyring.generate()
    write_key_file(directory / "master.key", keyring)
    sock, moved_from = bind_or_free(port)
    # The dev store reads no LOADER_* variable: a LOADER_DATABASE_URL in the shell is not its.
    settings = StoreSettings.from_environ(
        {}, data_dir=directory, listen="127.0.0.1:0", migrate=True
    )
    try:
        async with AsyncExitStack() as stack:
            stack.callback(sock.close)
            state = await stack.enter_async_context(
                store_state(settings, keys=StaticKeyring(keyring))
            )
            url = await stack.enter_async_context(serving(create_app(state), sock, "127.0.0.1"))
            record, admin = await issue_token(
                state.service.repo, frozenset({"*"}), description="loader dev admin token"
            )
            app_id = await seed_demo(state.service, record.id)
            _, agent_token = await issue_token(
                state.service.repo,
                frozenset({"secrets:reveal"}),
                app_id=app_id,
                description="loader dev agent (reveal, demo app only)",
            )
            yield DevStore(url, admin, agent_token, app_id, directory, moved_from)
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


async def seed_demo(service: StoreService, actor: str | None = None) -> int:
    """The demo app and its secrets, audited like API writes (by the admin token's id)."""
    app = await service.create_app(DEMO_APP)
    await service.repo.append_audit([_event("create_app", actor, app.id, None, ())])
    env = await service.environment(app.id)
    for name, value in demo_secrets().items():
        await service.write(
            env,
            name,
            value=value,
            actor=actor,
            audit=_event("upsert_secret", actor, app.id, env.name, (name,)),
        )
    return app.id


def _event(
    action: str, actor: str | None, app: int, env: str | None, names: tuple[str, ...]
) -> AuditEvent:
    return AuditEvent(
        at=utcnow(),
        action=action,
        outcome="ok",
        token_id=actor,
        app_id=app,
        environment=env,
        names=names,
        client="loader-dev",
    )


def memory_dir() -> Path:
    """A private directory on tmpfs for rendered secrets: /dev/shm or $XDG_RUNTIME_DIR."""
    from loader.fsio import is_memory_backed

    candidates = [Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"))]
    for base in candidates:
        try:
            if base.is_dir() and os.access(base, os.W_OK) and is_memory_backed(base):
                return Path(tempfile.mkdtemp(prefix="loader-dev-", dir=base))
        except OSError:
            continue
    raise ConfigError(
        "loader dev renders secrets into tmpfs, and neither /dev/shm nor $XDG_RUNTIME_DIR is "
        "a writable memory filesystem here"
    )


@asynccontextmanager
async def dev_agent(
    store: DevStore, out_dir: Path, port: int
) -> AsyncIterator[tuple[Agent, int | None]]:
    """An agent for the demo app rendering an env file and the demo spicepod into ``out_dir``."""
    template = store.data_dir / "spicepod.yaml"
    template.write_text(resources.files("loader.demo").joinpath("spicepod.yaml").read_text())
    sock, moved_from = bind_or_free(port)
    settings = AgentSettings.from_environ(
        {},
        store_url=store.url,
        token=store.agent_token,
        app=store.app_id,
        output=out_dir / ".env",
        template=template,
        template_output=out_dir / "spicepod.yaml",
        listen=f"127.0.0.1:{bound_port(sock)}",
        wait=30,
    )
    agent = Agent(settings, on_render=_print_render)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, sock))
    try:
        while agent.state.rendered is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield agent, moved_from
    finally:
        stop.set()
        await task


def _print_render(snapshot: Snapshot, result: RenderResult) -> None:
    from loader.output import say

    if result.errors:
        say(f"[agent] revision {snapshot.revision}: NOT rendered: {'; '.join(result.errors)}")
    elif result.written:
        files = ", ".join(p.name for p in result.written)
        say(
            f"[agent] revision {snapshot.revision}: rendered {', '.join(snapshot.names)} -> {files}"
        )


@asynccontextmanager
async def demo_app(agent: Agent) -> AsyncIterator[asyncio.subprocess.Process]:
    """The demo app under ``loader run --watch --mask``, reading the agent's endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADER_")}
    env["LOADER_AGENT_URL"] = agent.bound or ""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loader",
        "run",
        "--watch",
        "--mask",
        "--debounce",
        "0.1",
        "--",
        sys.executable,
        "-m",
        "loader.demo.app",
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run_dev(port: int, agent_port: int) -> None:
    from loader.eventloop import until_signalled
    from loader.output import say

    # The agent's own log line for each render would repeat the [agent] line printed here.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("loader.agent").setLevel(logging.WARNING)
    out_dir = memory_dir()
    try:
        async with (
            dev_store(port) as store,
            dev_agent(store, out_dir, agent_port) as (agent, agent_moved_from),
        ):
            say(banner(store, agent, out_dir, agent_moved_from, loader_command()))
            async with demo_app(agent):
                await until_signalled()
                say("\nstopping; removing the dev store and the rendered files")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def loader_command() -> tuple[str, str | None]:
    """How to run ``loader`` from another terminal: ``loader`` when that is this one on PATH,
    else this install's absolute path; and the venv's activate script, when there is one."""
    bin_dir = Path(sys.executable).parent
    script = bin_dir / "loader"
    activate = bin_dir / "activate"
    on_path = shutil.which("loader")
    if script.exists():
        if on_path is not None and Path(on_path).resolve() == script.resolve():
            return "loader", None
        return str(script), str(activate) if activate.exists() else None
    return f"{sys.executable} -m loader", str(activate) if activate.exists() else None


def _moved(asked: int | None) -> str:
    return f"  (port {asked} was taken)" if asked else ""


def banner(
    store: DevStore,
    agent: Agent,
    out_dir: Path,
    agent_moved_from: int | None = None,
    command: tuple[str, str | None] = ("loader", None),
) -> str:
    loader, activate = command
    agent_moved = _moved(agent_moved_from)
    path_hint = (
        f"\n  # `loader` is not on your PATH: run it as below, or first `. {activate}`"
        if activate
        else ""
    )
    return f"""
loader dev is running (embedded SQLite store in {store.data_dir}; removed on exit).

  Store API:    {store.url}      (OpenAPI: {store.url}/v1/openapi.json){_moved(store.moved_from)}
  Admin token:  {store.admin_token}
  Demo app:     {DEMO_APP} (id {store.app_id}) with DATABASE_URL, API_KEY, GREETING
  Agent:        renders into {out_dir} (tmpfs): .env and spicepod.yaml
  Agent API:    {agent.bound}/v1/secrets   (needs the header X-Loader-Request: true){agent_moved}
  Demo process: python -m loader.demo.app under `loader run --watch --mask`, restarted on
                every change (its output below; the value it prints outright is masked)

In another terminal:{path_hint}

  export LOADER_STORE_URL={store.url}
  export LOADER_TOKEN={store.admin_token}
  export LOADER_APP={DEMO_APP}
  {loader} secrets list
  printf 'bonjour' | {loader} secrets set GREETING      # re-rendered and restarted at once
  cat {out_dir}/spicepod.yaml
  LOADER_AGENT_URL={agent.bound} {loader} run -- env  # your own command, with the secrets

Press Ctrl-C to stop.
"""


def main(port: int, agent_port: int = 8701) -> int:
    asyncio.run(run_dev(port, agent_port))
    return 0
