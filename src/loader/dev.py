"""``loader dev``: the whole product on one machine, like ``vault server -dev``.

An embedded SQLite store in a temporary directory with a generated master key, a demo app with a
few secrets, the admin token and URLs printed; it runs until Ctrl-C and then removes everything
it created.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from loader.crypto import Keyring
from loader.server.app import create_app, serving, store_state
from loader.settings import StoreSettings
from loader.store.auth import issue_token
from loader.store.keyfile import StaticKeyring, write_key_file
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
    app_id: int
    data_dir: Path


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@asynccontextmanager
async def dev_store(port: int = 8700, data_dir: Path | None = None) -> AsyncIterator[DevStore]:
    """A throwaway store with a demo app, served on ``port`` (or a free one if taken)."""
    owned = data_dir is None
    directory = data_dir or Path(tempfile.mkdtemp(prefix="loader-dev-"))
    directory.chmod(0o700)
    keyring = Keyring.generate()
    write_key_file(directory / "master.key", keyring)
    if port and not port_free("127.0.0.1", port):
        log.warning("port %d is taken; using a free port instead", port)
        port = 0
    settings = StoreSettings(data_dir=directory, listen=f"127.0.0.1:{port}", migrate=True)
    try:
        async with AsyncExitStack() as stack:
            state = await stack.enter_async_context(
                store_state(settings, keys=StaticKeyring(keyring))
            )
            _, bound = await stack.enter_async_context(
                serving(create_app(state), "127.0.0.1", port)
            )
            _, admin = await issue_token(
                state.service.repo, frozenset({"*"}), description="loader dev admin token"
            )
            app_id = await seed_demo(state.service)
            yield DevStore(f"http://127.0.0.1:{bound}", admin, app_id, directory)
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


async def seed_demo(service: StoreService) -> int:
    app = await service.create_app(DEMO_APP)
    env = await service.environment(app.id)
    for name, value in demo_secrets().items():
        await service.write(env, name, value=value, actor="loader-dev")
    return app.id


async def run_dev(port: int) -> None:
    from loader.console import say, until_signalled

    async with dev_store(port) as store:
        say(banner(store))
        await until_signalled()
        say("\nstopping; removing the dev store")


def banner(store: DevStore) -> str:
    return f"""
loader dev is running (embedded SQLite store in {store.data_dir}; removed on exit).

  Store API:    {store.url}      (OpenAPI: {store.url}/v1/openapi.json)
  Admin token:  {store.admin_token}
  Demo app:     {DEMO_APP} (id {store.app_id}) with DATABASE_URL, API_KEY, GREETING

In another terminal:

  export LOADER_STORE_URL={store.url}
  export LOADER_TOKEN={store.admin_token}
  export LOADER_APP={store.app_id}
  loader secrets list
  printf 'bonjour' | loader secrets set GREETING

Press Ctrl-C to stop.
"""


def main(port: int) -> int:
    asyncio.run(run_dev(port))
    return 0
