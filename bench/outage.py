"""A PostgreSQL outage under load, measured: what clients get and what the store logs.

    .venv/bin/python -m bench.outage [--compare-main] [--seconds 10]

A store serves from a real PostgreSQL; eight clients (four writing secrets, four revealing)
send about 20 requests a second each. Three seconds in, PostgreSQL goes away -- crash-stopped
(``down``) or frozen with SIGSTOP (``frozen``) -- for ``--seconds``, then comes back. Reported:
the answers during the outage by status, how many were not JSON, the slowest answer, the
requests still unanswered after 15 s, the store's log lines and tracebacks, and the time from
PostgreSQL's return to the first acknowledged write.

``--compare-main`` runs the same scenarios on the code of the ``main`` branch first (extracted
with ``git archive`` into a temporary directory and put first on PYTHONPATH), in the same run.
Not part of ``bench/run``: it takes about a minute per scenario and code version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from tests.pg import PostgresServer
from tests.procs import LOADER, loader_env, run_loader, spawn, wait_for_line

from bench.common import ROOT

CLIENT_TIMEOUT = 15.0
PACE = 0.05


@dataclass
class Answer:
    started: float
    ended: float
    kind: str
    status: str
    json_body: bool


@dataclass
class Outcome:
    code: str
    scenario: str
    during: Counter[str] = field(default_factory=Counter)
    not_json_5xx: int = 0
    slowest: float = 0.0
    unanswered: int = 0
    log_lines: int = 0
    tracebacks: int = 0
    recovery: float | None = None
    total: int = 0


def environment(code: Path | None) -> dict[str, str]:
    env = loader_env()
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


async def client_loop(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    app: int,
    kind: str,
    index: int,
    stop: float,
    answers: list[Answer],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    while time.monotonic() < stop:
        n += 1
        started = time.monotonic()
        try:
            if kind == "write":
                req = session.post(
                    f"{base}/v1/apps/{app}/environments/default/secrets",
                    json={"name": f"W{index}", "value": f"v{n}"},
                    headers=headers,
                )
            else:
                req = session.get(
                    f"{base}/v1/apps/{app}/environments/default/rendered?mode=full",
                    headers=headers,
                )
            async with req as resp:
                body = await resp.read()
                try:
                    json.loads(body)
                    is_json = True
                except ValueError:
                    is_json = False
                answers.append(Answer(started, time.monotonic(), kind, str(resp.status), is_json))
        except TimeoutError:
            answers.append(Answer(started, time.monotonic(), kind, "timeout", False))
        except aiohttp.ClientError as exc:
            answers.append(Answer(started, time.monotonic(), kind, type(exc).__name__, False))
        await asyncio.sleep(PACE)


async def load(base: str, token: str, app: int, seconds: float) -> list[Answer]:
    answers: list[Answer] = []
    stop = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(
            *(
                client_loop(session, base, token, app, kind, i, stop, answers)
                for kind in ("write", "read")
                for i in range(4)
            )
        )
    return answers


def scenario(code: Path | None, label: str, kind: str, outage: float, work: Path) -> Outcome:
    pg = PostgresServer()
    pg.start()
    store = None
    try:
        url = pg.url(pg.create_database())
        env = environment(code)
        key = work / f"{label}-{kind}.key"
        where = ("--database-url", url, "--master-key-file", str(key))
        init = run_loader("store", "init", *where, "--json", env=env, timeout=120)
        assert init.returncode == 0, init.stderr.decode()
        token = json.loads(init.stdout)["admin_token"]
        log = work / f"{label}-{kind}.log"
        store = spawn([*LOADER, "store", "serve", *where, "--listen", "127.0.0.1:0"], log, env)
        base = wait_for_line(store, r"listening on (\S+)")
        req = urllib.request.Request(
            f"{base}/v1/apps",
            data=json.dumps({"name": "outage"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            app = int(json.loads(resp.read())["id"])
        lines_before = len(log.read_text(errors="replace").splitlines())

        async def timeline() -> tuple[list[Answer], float, float]:
            task = asyncio.ensure_future(load(base, token, app, 3 + outage + 10))
            await asyncio.sleep(3)
            began = time.monotonic()
            frozen: list[int] = []
            if kind == "down":
                await asyncio.to_thread(pg.halt)
            else:
                frozen = pg.freeze()
            await asyncio.sleep(outage)
            if kind == "down":
                await asyncio.to_thread(pg.resume)
            else:
                pg.thaw(frozen)
            back = time.monotonic()
            return await task, began, back

        answers, began, back = asyncio.run(timeline())
        time.sleep(0.5)
        text = log.read_text(errors="replace")
        result = Outcome(label, kind, total=len(answers))
        result.log_lines = len(text.splitlines()) - lines_before
        result.tracebacks = text.count("Traceback")
        for a in answers:
            if began <= a.started < back:
                result.during[a.status] += 1
            if a.status.startswith("5") and not a.json_body:
                result.not_json_5xx += 1
            result.slowest = max(result.slowest, a.ended - a.started)
            if a.status == "timeout":
                result.unanswered += 1
        first_write = min(
            (
                a.ended
                for a in answers
                if a.kind == "write" and a.status == "200" and a.ended > back
            ),
            default=None,
        )
        result.recovery = None if first_write is None else first_write - back
        return result
    finally:
        if store is not None:
            store.stop()
        pg.thaw(pg.processes())
        pg.stop()


def main_code(work: Path) -> Path:
    target = work / "main"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "main", "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def report(results: list[Outcome]) -> str:
    head = [
        "code",
        "outage",
        "requests",
        "answers during the outage",
        "5xx not JSON",
        "slowest answer",
        "no answer in 15 s",
        "log lines",
        "tracebacks",
        "first write after",
    ]
    rows = [head, ["---"] * len(head)]
    for r in results:
        during = ", ".join(f"{k}: {v}" for k, v in sorted(r.during.items()))
        rows.append(
            [
                r.code,
                r.scenario,
                str(r.total),
                during,
                str(r.not_json_5xx),
                f"{r.slowest:.1f} s",
                str(r.unanswered),
                str(r.log_lines),
                str(r.tracebacks),
                "-" if r.recovery is None else f"{r.recovery:.2f} s",
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.outage")
    parser.add_argument("--compare-main", action="store_true", help="also run main's code first")
    parser.add_argument("--seconds", type=float, default=10.0, help="outage length")
    parser.add_argument("--scenarios", default="down,frozen", help="comma-separated: down, frozen")
    parser.add_argument("--keep", action="store_true", help="keep the store logs (printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loader-outage-"))
    results = []
    try:
        codes: list[tuple[str, Path | None]] = []
        if args.compare_main:
            codes.append(("main", main_code(work)))
        codes.append(("branch", ROOT / "src"))
        for kind in args.scenarios.split(","):
            for label, code in codes:
                print(f"== {label}: PostgreSQL {kind} for {args.seconds:g} s", file=sys.stderr)
                results.append(scenario(code, label, kind, args.seconds, work))
        print(report(results))
    finally:
        if args.keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
