"""Where ``loader run`` gets the secrets: a file, a local agent, or the store.

``load`` is synchronous and light (the exec path); ``follow`` is async (supervise mode) and
yields the values each time they may have changed, for as long as it runs (it rides out errors
itself; :mod:`loader.runner.changes` runs it as one long-lived task).
"""

from __future__ import annotations

import os
import time

from loader import envparse
from loader.errors import (
    ConfigError,
    DataError,
    InsufficientScopeError,
    LoaderError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    UnreachableError,
    UsageError,
    error_from_response,
)
from loader.fsguard import read_token_file, read_trusted
from loader.httpwire import Response
from loader.runner import http
from loader.settingtypes import FORMATS, TOKEN
from loader.workload import AUTH_MODES

# Stdlib basics only at import time: typing, dataclasses and pathlib cost more than the rest.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import Event
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from typing import Any

    from loader.consumer import Report
    from loader.runner.options import RunOptions
    from loader.workload import Grant

AGENT_HEADERS = {"X-Loader-Request": "true"}
FOLLOW_WAIT = 30


def _retrying(fetch: Callable[[], dict[str, str]], timeout: float) -> dict[str, str]:
    """Retry while unreachable or not ready (an agent starting up), up to ``timeout``."""
    deadline = None
    while True:
        try:
            return fetch()
        except (ServiceUnavailableError, RateLimitedError) as exc:
            if deadline is None:  # (imported only when the first try fails)
                from loader.backoff import Backoff, Deadline

                deadline = Deadline(timeout, Backoff(0.05, 1.0))
            time.sleep(deadline.delay(exc))


def _check(resp: Response, what: str) -> None:
    if resp.status != 200:
        raise error_from_response(resp.status, resp.body, resp.headers.get("retry-after"), what)


class FileSource:
    def __init__(self, path: str, fmt: str | None, *, literal: bool = False) -> None:
        self.path = path
        self.absolute = os.path.abspath(path)
        self.fmt = fmt
        self.literal = literal

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> dict[str, str]:
        try:
            text = read_trusted(self.path).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"cannot read {self.path}: not UTF-8 text") from None
        except OSError as exc:  # the input file: missing or unreadable is "not found"
            raise NotFoundError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return envparse.parse(text, self.fmt, interpolate=not self.literal)
        except envparse.EnvParseError as exc:
            raise DataError(f"{self.path}: {exc}") from None

    async def follow(self) -> AsyncIterator[dict[str, str]]:
        from pathlib import Path

        from loader.fswatch import watch_file

        async for _ in watch_file(Path(self.absolute)):
            try:
                yield self.load()
            except (NotFoundError, DataError):
                continue  # mid-rewrite or removed: wait for the next version


class AgentSource:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def describe(self) -> str:
        return f"agent {self.url}"

    def _fetch(self) -> dict[str, str]:
        resp = http.get(self.url, "/v1/secrets?format=shell", AGENT_HEADERS, self.timeout)
        _check(resp, "agent")
        return envparse.parse_shell(resp.body.decode("utf-8"))

    def load(self) -> dict[str, str]:
        return _retrying(self._fetch, self.timeout)

    async def follow(self) -> AsyncIterator[dict[str, str]]:
        async for resp in _long_poll(
            lambda tag: http.aget(
                self.url,
                f"/v1/secrets?format=shell&wait={FOLLOW_WAIT}",
                {**AGENT_HEADERS, **({"If-None-Match": tag} if tag else {})},
                FOLLOW_WAIT + 15,
            ),
            self.describe(),
            # A local agent that refuses or is not ready yet is restarting: back at once.
            soon=ServiceUnavailableError,
        ):
            yield envparse.parse_shell(resp.body.decode("utf-8"))


class WorkloadLogin:
    """``--auth jwt``: access tokens traded for the workload's JWT at the store's
    ``/oauth/token`` (a plain POST with the stdlib client: the store verifies the JWT, not
    us), the file read afresh for each trade, traded again when a third of the last is left."""

    def __init__(self, url: str, path: str, ca_file: str | None, timeout: float) -> None:
        self.url, self.path, self.ca_file, self.timeout = url, path, ca_file, timeout
        self._grant: Grant | None = None

    def token(self, client: Any = None) -> str:
        """The access token, traded first when due; over ``client`` (an open
        :class:`~loader.httpclient.HttpClient` to the store, kept alive for the read that
        follows) or a connection of its own."""
        grant = self._grant
        if grant is None or grant.due(time.time()):
            from loader.httpclient import HttpClient
            from loader.workload import read_grant, token_request

            request = token_request(read_token_file(self.path))
            own = client is None
            if own:
                client = HttpClient(self.url, ca_file=self.ca_file, timeout=self.timeout)
            try:
                resp = client.request("POST", "/oauth/token", request)
            finally:
                if own:
                    client.close()
            _check(resp, "store")
            grant = self._grant = read_grant(resp.body, time.time())
        return grant.token

    def valid_for(self) -> float:
        return self._grant.valid_for(time.time()) if self._grant is not None else 0.0

    def forget(self) -> None:
        """The store refused the access token: trade again next time."""
        self._grant = None


class StoreSource:
    def __init__(
        self,
        url: str,
        token: str | WorkloadLogin,
        app: int | str,
        environment: str,
        ca_file: str | None,
        timeout: float,
    ) -> None:
        self.url, self.app, self.environment = url, app, environment
        self.ca_file, self.timeout = ca_file, timeout
        self.login = token if isinstance(token, WorkloadLogin) else None
        self._static = token if isinstance(token, str) else ""
        # --watch: what the runner reports on each long-poll (loader.runner.rollout), and the
        # event that re-issues the held long-poll when the report changes.
        self.report: Report | None = None
        self._nudged: Event | None = None

    def describe(self) -> str:
        return f"store {self.url} (app {self.app} / {self.environment})"

    @property
    def path(self) -> str:
        from urllib.parse import quote

        env = quote(self.environment, safe="")
        return f"/v1/apps/{self.app}/environments/{env}/rendered?mode=full&format=json"

    def _fetch(self) -> dict[str, str]:
        from loader.httpclient import HttpClient

        client = HttpClient(self.url, ca_file=self.ca_file, timeout=self.timeout)
        try:
            # (--auth jwt: the trade and the read share one connection)
            client.token = self.login.token(client) if self.login is not None else self._static
            if isinstance(self.app, str):
                self.app = _resolve_app(client, self.app)
            resp = client.request("GET", self.path)
        finally:
            client.close()
        _check(resp, "store")
        return _store_values(resp.body)

    def load(self) -> dict[str, str]:
        return _retrying(self._fetch, self.timeout)

    async def bearer(self) -> str:
        """The token to send now (--auth jwt: traded in a thread, the stdlib client blocks)."""
        import asyncio

        if self.login is not None:
            return await asyncio.to_thread(self.login.token)
        return self._static

    def nudge(self) -> None:
        """Send the report now: the held long-poll is given up and asked again."""
        if self._nudged is not None:
            self._nudged.set()

    async def _poll(self, tag: str | None) -> Response:
        import asyncio

        from loader.consumer import HEADER

        nudged = self._nudged
        if nudged is not None:
            nudged.clear()
        wait = FOLLOW_WAIT
        token = await self.bearer()
        if self.login is not None:
            wait = max(1, min(wait, int(self.login.valid_for())))  # not held past its renewal
        headers = {"Authorization": f"Bearer {token}", **({"If-None-Match": tag} if tag else {})}
        if self.report is not None:
            headers[HEADER] = self.report.header()
        get = asyncio.ensure_future(
            http.aget(self.url, f"{self.path}&wait={wait}", headers, wait + 15, self.ca_file)
        )
        waits: list[asyncio.Future[Any]] = [get]
        if nudged is not None:
            waits.append(asyncio.ensure_future(nudged.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                if not task.done():
                    task.cancel()
        if not get.done() or get.cancelled():
            return Response(304, {}, b"")  # nudged: ask again at once, with the new report
        resp = get.result()
        if resp.status == 401 and self.login is not None:
            self.login.forget()
        return resp

    async def follow(self) -> AsyncIterator[dict[str, str]]:
        import asyncio

        self._nudged = asyncio.Event()
        async for resp in _long_poll(self._poll, self.describe()):
            yield _store_values(resp.body)


def _resolve_app(client: Any, name: str) -> int:
    """An app given by name: its id, from the app list (needs apps:read)."""
    from loader.names import APP_LOOKUP_SCOPE, check_app_name, find_app

    check_app_name(name)
    resp = client.request("GET", "/v1/apps")
    if resp.status == 403:
        raise InsufficientScopeError(f"LOADER_APP={name}: {APP_LOOKUP_SCOPE}")
    _check(resp, "store")
    import json

    return find_app(json.loads(resp.body)["apps"], name)


class Revisioned(dict[str, str]):
    """Values read from the store, with the revision they are of."""

    __slots__ = ("revision",)

    def __init__(self, values: Mapping[str, str], revision: int | None) -> None:
        super().__init__(values)
        self.revision = revision


def _store_values(body: bytes) -> dict[str, str]:
    import json

    data = json.loads(body)
    revision = data.get("revision")
    return Revisioned(data["secrets"], revision if isinstance(revision, int) else None)


async def _long_poll(
    request: Callable[[str | None], Awaitable[Response]],
    what: str,
    soon: type[LoaderError] = UnreachableError,
) -> AsyncIterator[Response]:
    """Yield each 200 of a long-poll loop (sending the last ETag). Errors are ridden out with
    jittered backoff; ``soon`` errors (the other side restarting) are retried within a second."""
    import asyncio
    import logging

    from loader.backoff import Backoff, Outage

    backoff = Backoff(0.5, 15.0)
    outage = Outage(logging.getLogger("loader.run"), what)
    etag: str | None = None
    while True:
        try:
            resp = await request(etag)
            if resp.status != 304:
                _check(resp, what)
        except LoaderError as exc:
            retry_after = getattr(exc, "retry_after", None)
            wait = backoff.next(retry_after, unreachable=isinstance(exc, soon))
            outage.failed(f"following changes: {exc}", wait)
            await asyncio.sleep(wait)
            continue
        backoff.reset()
        outage.recovered()
        if resp.status == 304:
            continue
        etag = resp.headers.get("etag")
        yield resp


def make_source(opts: RunOptions, environ: Mapping[str, str]) -> Source:
    timeout = opts.duration("timeout")
    fmt = opts.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"run: --format must be one of {', '.join(FORMATS)}")
    from_file = opts.get("from_file")
    if from_file:
        return FileSource(from_file, fmt, literal=opts.on("literal"))
    agent = opts.get("agent_url")
    if agent:
        try:
            http.target(agent)
        except ValueError as exc:
            raise ConfigError(f"bad setting: LOADER_AGENT_URL: {exc}") from None
        return AgentSource(agent, timeout)
    store = opts.get("store_url")
    if store:
        try:
            http.target(store)
        except ValueError:
            raise ConfigError(
                "bad setting: LOADER_STORE_URL must be http(s)://host[:port]"
            ) from None
        ca_file = opts.get("ca_file")
        auth = opts.choice("auth", AUTH_MODES)
        return StoreSource(
            store,
            WorkloadLogin(store, opts.get("jwt_file") or "", ca_file, timeout)
            if auth == "jwt"
            else _token(opts, environ),
            _app(opts.get("app")),
            opts.get("environment") or "",
            ca_file,
            timeout,
        )
    raise ConfigError(
        "no source of secrets: pass --from-file FILE, or set LOADER_AGENT_URL (a local agent) "
        "or LOADER_STORE_URL with LOADER_TOKEN and LOADER_APP"
    )


def _token(opts: RunOptions, environ: Mapping[str, str]) -> str:
    token_file = opts.get("token_file")
    if token_file:
        return read_token_file(token_file)
    token = environ.get(TOKEN, "")
    if not token:
        raise ConfigError("reading the store needs a token: LOADER_TOKEN or LOADER_TOKEN_FILE")
    return token


def _app(raw: str | None) -> int | str:
    """An app id, or a name (looked up when the store is first read)."""
    if raw is None or not raw.strip():
        raise ConfigError("reading the store needs the app: --app NAME|ID or LOADER_APP")
    if raw.isdigit():
        if int(raw) < 1:
            raise ConfigError("bad setting: LOADER_APP / --app: app ids start at 1")
        return int(raw)
    return raw.strip()


if TYPE_CHECKING:
    Source = FileSource | AgentSource | StoreSource
