"""Readiness: can this store serve right now? (``GET /v1/ready``; the write gate.)

Ready means every check passes:

* ``data_file`` -- SQLite: the file at the database's path is the one the store opened (not
  deleted or replaced under it);
* ``disk`` -- SQLite: at least ``min_free`` bytes free where the database lives;
* ``database`` -- a round trip answers within ``timeout``, and no database call failed in the
  last ``window`` seconds (a full PostgreSQL disk fails writes while reads still answer);
* ``master_key`` -- the master key file opens a data key of each master key the database uses
  (a self-test: a replaced or wrong key file is caught before it wraps new data keys).

Writes are refused while the master key fails its self-test (:meth:`Readiness.write_problem`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from loader import crypto
from loader.errors import DatabaseUnavailableError, DecryptionError, LoaderError
from loader.store.models import DataKeyRecord
from loader.store.repository import Repository
from loader.store.service import KeyringSource

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    code: str = "ok"
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "ok"


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def ready(self) -> bool:
        return self.failure is None


class Readiness:
    def __init__(
        self,
        repo: Repository,
        keys: KeyringSource,
        *,
        timeout: float = 2.0,
        min_free: int = 8 * MIB,
        window: float = 10.0,
        cache_for: float = 1.0,
    ) -> None:
        self.repo, self.keys = repo, keys
        self.timeout, self.min_free = timeout, min_free
        self.window, self.cache_for = window, cache_for
        self._samples: tuple[DataKeyRecord, ...] = ()
        self._verified: tuple[object, tuple[DataKeyRecord, ...], Check] | None = None
        self._key_checked = float("-inf")
        self._last: tuple[float, Report] | None = None
        self._running: asyncio.Future[Report] | None = None

    # -- /v1/ready -----------------------------------------------------------------------------

    async def report(self) -> Report:
        """The checks, run at most once per ``cache_for`` seconds however many probes ask."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.cache_for:
            return self._last[1]
        if self._running is not None:
            return await asyncio.shield(self._running)
        self._running = asyncio.ensure_future(self._check())
        try:
            report = await asyncio.shield(self._running)
        finally:
            self._running = None
        self._last = (time.monotonic(), report)
        return report

    async def _check(self) -> Report:
        return Report((self._data_file(), self._disk(), await self._database(), self._keys()))

    def _data_file(self) -> Check:
        problem = self.repo.file_problem()
        return Check("data_file", problem.code, problem.message) if problem else Check("data_file")

    def _disk(self) -> Check:
        free = self.repo.free_bytes()
        if free is not None and free < self.min_free:
            return Check(
                "disk",
                "disk_full",
                f"{free // MIB} MiB free where the database lives (under {self.min_free // MIB})",
            )
        return Check("disk")

    async def _database(self) -> Check:
        health = self.repo.health
        recent = health.failing(self.window)
        if recent is not None:
            return Check("database", recent.code, recent.message)
        try:
            samples = await asyncio.wait_for(self.repo.probe(), self.timeout)
        except DatabaseUnavailableError as exc:
            return Check("database", exc.code, exc.message)
        except TimeoutError:
            return Check("database", "database_timeout", f"no answer within {self.timeout:g} s")
        self._samples = tuple(samples)
        return Check("database")

    # -- the master key self-test ---------------------------------------------------------------

    def remember(self, samples: list[DataKeyRecord]) -> None:
        """Data keys to test the key file against (from a probe at start-up)."""
        self._samples = tuple(samples)

    def _keys(self) -> Check:
        self._key_checked = time.monotonic()
        try:
            self.keys.refresh()  # re-read the file if it changed
            keyring = self.keys.keyring
        except LoaderError as exc:
            failed = Check("master_key", "master_key_unreadable", exc.message)
            self._verified = (None, self._samples, failed)
            return failed
        verified = self._verified
        if verified is not None and verified[0] is keyring and verified[1] == self._samples:
            return verified[2]
        check = Check("master_key")
        for record in self._samples:
            try:
                keyring.unwrap(record.wrapped, crypto.data_key_aad(record.app_id, record.env_id))
            except DecryptionError:
                check = Check(
                    "master_key",
                    "master_key_mismatch",
                    f"the master key file does not open data key {record.id} (wrapped by "
                    f"master key {record.wrapped.master_key_id})",
                )
                break
        self._verified = (keyring, self._samples, check)
        return check

    def write_problem(self) -> DatabaseUnavailableError | None:
        """Refuse writes while the master key fails its self-test (re-run at most once a
        second): a wrong key file would wrap new data keys no right key could open."""
        if time.monotonic() - self._key_checked >= 1.0 or self._verified is None:
            check = self._keys()
        else:
            check = self._verified[2]
        if check.ok:
            return None
        return DatabaseUnavailableError(f"writes refused: {check.message}", check.code)
