"""The store's domain operations: encryption, change notification and caching over a repository.

Knows nothing of HTTP. Handlers and CLI commands call it; it calls the repository.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypedDict, Unpack

from loader import crypto
from loader.crypto import Keyring, Sealed, WrappedKey
from loader.errors import DecryptionError, NotFoundError
from loader.names import DEFAULT_ENVIRONMENT
from loader.store.models import (
    UNSET,
    App,
    AuditEvent,
    AuditQuery,
    DataKeyRecord,
    Environment,
    SecretChange,
    SecretMeta,
    TokenRecord,
    VersionMeta,
    WriteResult,
    _Unset,
    utcnow,
)
from loader.store.notifier import ChangeNotifier
from loader.store.repository import Repository

MASK = "**********"
LATEST_KEPT = 10_000  # environments whose newest record is kept for woken watchers


class KeyringSource(Protocol):
    @property
    def keyring(self) -> Keyring: ...

    def refresh(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Revealed:
    """Plaintext values of one environment at one revision (held in memory only), shared by
    every request at that revision (thousands of woken watchers). A preview holds
    :data:`MASK` for each value instead."""

    env: Environment
    values: dict[str, str]
    unset: tuple[str, ...]
    names: tuple[str, ...] = field(init=False)  # the values' names, sorted (once: every reveal
    # is audited with them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(sorted(self.values)))

    @property
    def revision(self) -> int:
        return self.env.revision


class WriteConditions(TypedDict, total=False):
    """What a write or delete of one secret is conditioned on and recorded with."""

    if_match: tuple[str, ...] | None  # the ETags an If-Match header named: one must be current
    actor: str | None  # who writes (the token id), kept with the new version
    audit: AuditEvent | None  # the audit record, committed with the write


class StoreService:
    def __init__(
        self,
        repo: Repository,
        keys: KeyringSource,
        *,
        max_versions: int = 10,
        reveal_cache_size: int = 64,
    ) -> None:
        self.repo = repo
        self.keys = keys
        self.notifier = ChangeNotifier(prepare=self._prepare)
        self.max_versions = max_versions
        self._data_keys: dict[tuple[int, str, bytes], bytes] = {}
        self._latest: dict[int, Environment] = {}
        self._reveal_cache: OrderedDict[tuple[int, int, tuple[str, ...] | None], Revealed] = (
            OrderedDict()
        )
        self._reveal_inflight: dict[
            tuple[int, int, tuple[str, ...] | None], asyncio.Future[Revealed]
        ] = {}
        self._reveal_cache_size = reveal_cache_size
        # Told about each audit record a write committed (the audit log's file mirror).
        self.on_audited: Callable[[AuditEvent], None] | None = None
        # Given the audit record of a write that changed nothing, to store on its own.
        self.on_unchanged: Callable[[AuditEvent], None] | None = None
        # Tokens and clients seen revoked since start: a request still holding one is woken
        # (and refused), and none is held again.
        self.revoked: set[str] = set()
        repo.subscribe(self.notifier.publish)
        repo.subscribe_revocations(self._revoked)

    def _revoked(self, token_id: str) -> None:
        self.revoked.add(token_id)
        self.notifier.interrupt(token_id)

    # -- keys ------------------------------------------------------------------------------

    def new_data_key(self, app_id: int, env_id: int) -> WrappedKey:
        self.keys.refresh()  # a rotation may have put a new primary key in the file
        return self.keys.keyring.wrap(crypto.new_key(), crypto.data_key_aad(app_id, env_id))

    def data_key(self, record: DataKeyRecord) -> bytes:
        """Unwrap (and cache) a data key; reload the key file once for an unknown master key."""
        cache_key = (record.id, record.wrapped.master_key_id, record.wrapped.nonce)
        key = self._data_keys.get(cache_key)
        if key is None:
            aad = crypto.data_key_aad(record.app_id, record.env_id)
            keyring = self.keys.keyring
            if keyring.get(record.wrapped.master_key_id) is None:
                self.keys.refresh()
                keyring = self.keys.keyring
            key = keyring.unwrap(record.wrapped, aad)
            self._data_keys[cache_key] = key
        return key

    def seal_value(
        self, env: Environment, key: DataKeyRecord, name: str, version: int, value: str
    ) -> Sealed:
        """Encrypt under ``env``'s data key, bound to the row it is written to."""
        self._check_key(env, key, name, version)
        aad = crypto.value_aad(env.app_id, env.id, name, version)
        return crypto.seal(self.data_key(key), value.encode(), aad)

    def open_value(
        self, env: Environment, key: DataKeyRecord, name: str, version: int, sealed: Sealed
    ) -> str:
        """Decrypt a value read from ``env``'s row ``name``/``version`` (and only from there)."""
        self._check_key(env, key, name, version)
        aad = crypto.value_aad(env.app_id, env.id, name, version)
        what = self._what(key, name, version)
        return crypto.open_sealed(self.data_key(key), sealed, aad, what).decode()

    def _check_key(self, env: Environment, key: DataKeyRecord, name: str, version: int) -> None:
        if key.env_id != env.id or key.app_id != env.app_id:
            raise DecryptionError(
                f"{self._what(key, name, version)}: not the environment's own data key"
            )

    @staticmethod
    def _what(key: DataKeyRecord, name: str, version: int) -> str:
        return (
            f"value of {name} v{version} "
            f"(data key {key.id}, master key {key.wrapped.master_key_id})"
        )

    async def _prepare(self, env: Environment, revision: int) -> None:
        """Decrypt a changed environment once, before its watchers wake to ask for it."""
        await self.reveal(replace(env, revision=revision))

    # -- change notification (long-polls) -------------------------------------------------

    def held_by(self, holder: str) -> int:
        """How many long-polls ``holder`` (a token id) holds now."""
        return self.notifier.holding(holder)

    def wait_for_change(
        self, env: Environment, timeout: float, holder: str
    ) -> Coroutine[Any, Any, bool]:
        """Until ``env`` moves past its revision (True) or ``timeout`` passes (False). (The
        notifier's own coroutine: no frame more for each of thousands of held requests.)"""
        return self.notifier.wait(env.id, env.revision, timeout, env, holder=holder)

    def latest(self, env: Environment) -> Environment:
        """``env`` at the newest revision announced (no database read: after a wake-up). The
        thousands of watchers one change wakes share one record."""
        revision = max(env.revision, self.notifier.latest(env.id) or 0)
        if revision == env.revision:
            return env
        kept = self._latest.get(env.id)
        if (
            kept is not None
            and kept.revision == revision
            and (kept.app_id, kept.name, kept.created_at) == (env.app_id, env.name, env.created_at)
        ):
            return kept
        if len(self._latest) >= LATEST_KEPT:
            self._latest.clear()
        kept = self._latest[env.id] = replace(env, revision=revision)
        return kept

    def release_watchers(self) -> None:
        """At shutdown: answer every held long-poll now."""
        self.notifier.close()

    async def notifier_resync(self) -> None:
        """After missing notifications (a dropped LISTEN connection): re-check what is watched."""
        watched = self.notifier.watched()
        if not watched:
            return
        current = await self.repo.get_revisions(watched)
        for env_id in watched:
            latest = self.notifier.latest(env_id) or 0
            # A vanished environment wakes its watchers too (they then get a 404).
            self.notifier.publish(env_id, current.get(env_id, latest + 1))

    # -- apps and environments -------------------------------------------------------------

    async def create_app(self, name: str) -> App:
        return await self.repo.create_app(name, utcnow(), self.new_data_key)

    async def apps(self, only: int | None = None) -> list[App]:
        """Every app, or only app ``only`` (a token bound to it)."""
        return await self.repo.list_apps(only=only)

    async def delete_app(self, app_id: int) -> None:
        if not await self.repo.delete_app(app_id):
            raise NotFoundError("app not found")

    async def app(self, app_id: int) -> App:
        app = await self.repo.get_app(app_id)
        if app is None:
            raise NotFoundError("app not found")
        return app

    async def create_environment(self, app_id: int, name: str) -> Environment:
        return await self.repo.create_environment(app_id, name, utcnow(), self.new_data_key)

    async def environments(self, app_id: int) -> list[Environment]:
        await self.app(app_id)
        return await self.repo.list_environments(app_id)

    async def delete_environment(self, app_id: int, name: str) -> None:
        await self.app(app_id)
        if not await self.repo.delete_environment(app_id, name):
            raise NotFoundError(f"environment {name!r} not found")

    async def environment(self, app_id: int, name: str = DEFAULT_ENVIRONMENT) -> Environment:
        env = await self.repo.get_environment(app_id, name)
        if env is None:
            if await self.repo.get_app(app_id) is None:
                raise NotFoundError("app not found")
            raise NotFoundError(f"environment {name!r} not found")
        return env

    # -- secrets ---------------------------------------------------------------------------

    async def secrets(
        self, env: Environment, offset: int, limit: int
    ) -> tuple[list[SecretMeta], int]:
        """A page of ``env``'s secrets (by name) and how many it holds."""
        return await self.repo.list_secrets(env.id, offset, limit)

    async def versions(self, env: Environment, name: str) -> list[VersionMeta]:
        versions = await self.repo.list_versions(env.id, name)
        if versions is None:
            raise NotFoundError(f"secret {name!r} not found")
        return versions

    async def secret(self, env: Environment, name: str) -> SecretMeta:
        meta = await self.repo.get_secret(env.id, name)
        if meta is None:
            raise NotFoundError(f"secret {name!r} not found")
        return meta

    async def write(
        self,
        env: Environment,
        name: str,
        *,
        value: str | None = None,
        description: str | _Unset | None = UNSET,
        must_exist: bool = False,
        **conditions: Unpack[WriteConditions],
    ) -> WriteResult:
        """Create or change one secret: a value makes a new version; ``None`` leaves it.

        Writing the value (and description) a secret already has changes nothing: no version,
        no revision, no watcher woken; the result says ``changed=False``."""
        seal = matches = None
        if value is not None:
            plaintext = value

            def seal(version: int, key: DataKeyRecord) -> Sealed:
                return self.seal_value(env, key, name, version, plaintext)

            def matches(version: int, key: DataKeyRecord, sealed: Sealed) -> bool:
                try:
                    stored = self.open_value(env, key, name, version, sealed)
                except DecryptionError:
                    return False  # unreadable: writing a fresh version is the cure
                return hmac.compare_digest(stored.encode(), plaintext.encode())

        change = SecretChange(
            seal=seal, description=description, must_exist=must_exist, matches=matches, **conditions
        )
        result = await self.repo.write_secret(env, name, change, self.max_versions)
        audit = conditions.get("audit")
        if result.changed:
            self._audited(audit)
        elif audit is not None and self.on_unchanged is not None:
            self.on_unchanged(replace(audit, outcome="unchanged"))
        return result

    async def delete(
        self, env: Environment, name: str, **conditions: Unpack[WriteConditions]
    ) -> int:
        """Delete one secret (``conditions`` as :meth:`write` takes them; no ``actor`` needed)."""
        audit = conditions.get("audit")
        revision = await self.repo.delete_secret(env, name, conditions.get("if_match"), audit)
        self._audited(audit)
        return revision

    def _audited(self, event: AuditEvent | None) -> None:
        if event is not None and self.on_audited is not None:
            self.on_audited(event)

    async def rollback(
        self, env: Environment, name: str, version: int, **conditions: Unpack[WriteConditions]
    ) -> WriteResult:
        """Write version ``version``'s value again, as a new version."""
        found = await self.repo.get_version(env.id, name, version)
        if found is None:
            if await self.repo.get_secret(env.id, name) is None:
                raise NotFoundError(f"secret {name!r} not found")
            raise NotFoundError(
                f"version {version} of {name!r} is not kept (only the last "
                f"{self.max_versions} versions keep their value)"
            )
        sealed, key = found
        old = self.open_value(env, key, name, version, sealed.sealed)
        return await self.write(env, name, value=old, must_exist=True, **conditions)

    async def reveal(self, env: Environment, names: Sequence[str] | None = None) -> Revealed:
        """Decrypt an environment's values. Concurrent callers at one revision share one read."""
        wanted = tuple(sorted(set(names))) if names is not None else None
        revision = max(env.revision, self.notifier.latest(env.id) or 0)
        cache_key = (env.id, revision, wanted)
        hit = self._reveal_cache.get(cache_key)
        if hit is not None:
            self._reveal_cache.move_to_end(cache_key)
            return hit
        pending = self._reveal_inflight.get(cache_key)
        if pending is not None:
            # No shield: thousands of woken watchers wait here at once, and a shield per waiter
            # costs more than the read. (Handlers are not cancelled on client disconnect.)
            return await pending
        fut: asyncio.Future[Revealed] = asyncio.get_running_loop().create_future()
        self._reveal_inflight[cache_key] = fut
        try:
            revealed = await self._reveal_uncached(env, wanted)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: the caller re-raises it
            raise
        finally:
            self._reveal_inflight.pop(cache_key, None)
        fut.set_result(revealed)
        actual_key = (env.id, revealed.revision, wanted)
        self._reveal_cache[actual_key] = revealed
        while len(self._reveal_cache) > self._reveal_cache_size:
            self._reveal_cache.popitem(last=False)
        return revealed

    async def preview(self, env: Environment, names: Sequence[str] | None = None) -> Revealed:
        """What :meth:`reveal` would give, every value masked (nothing is decrypted)."""
        snapshot = await self.repo.read_values(env, names)
        return Revealed(
            snapshot.env, dict.fromkeys((v.name for v in snapshot.values), MASK), snapshot.unset
        )

    # -- audit and OAuth clients -----------------------------------------------------------

    async def audit_events(self, query: AuditQuery) -> tuple[list[AuditEvent], int]:
        return await self.repo.list_audit(query)

    async def credential(self, token_id: str) -> TokenRecord | None:
        """The token or OAuth client record ``token_id`` (None when there is none)."""
        return await self.repo.get_token(token_id)

    async def _reveal_uncached(self, env: Environment, names: tuple[str, ...] | None) -> Revealed:
        snapshot = await self.repo.read_values(env, names)
        values: dict[str, str] = {}
        for stored in snapshot.values:
            key = snapshot.data_keys[stored.value.data_key_id]
            values[stored.name] = self.open_value(
                snapshot.env, key, stored.name, stored.version, stored.value.sealed
            )
        return Revealed(snapshot.env, values, snapshot.unset)
