"""The store's Prometheus metrics (``GET /metrics``), in its own registry.

Requests are counted by route *template* (``/v1/apps/{appId}/...``), never the raw path, so
no name a client put in a URL becomes a label. Nothing here carries a secret's name or value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from loader.server.idempotency import Idempotency
from loader.store.audit import AuditLog
from loader.store.consumers import Consumers
from loader.store.fleet import Consumer, rollout
from loader.store.health import DatabaseHealth
from loader.store.notifier import ChangeNotifier

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _bound(value: float) -> str:
    """A bucket bound as prometheus-client spells it (``le="0.001"``, ``le="1.0"``)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class _Requests:
    """Requests by route template, method and status, and their latency histogram by route and
    method: plain counts updated on the event loop (a bisect and three additions per request),
    turned into metric families at scrape. (prometheus-client's Counter and Histogram take a
    lock and walk the buckets on every update: microseconds each, on every answer -- and ten
    thousand woken long-polls answer at once.)"""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts..., sum

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        cells = self.latency.get((route, method))
        if cells is None:
            cells = self.latency[(route, method)] = [0.0] * (len(_BUCKETS) + 2)
        cells[bisect_left(_BUCKETS, seconds)] += 1  # the first bound >= seconds (le)
        cells[-1] += seconds

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "loader_store_requests",
            "HTTP requests by route template, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(self.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "loader_store_request_seconds",
            "Time to answer, by route template (long-polls include their hold)",
            labels=["route", "method"],
        )
        bounds = [*(_bound(b) for b in _BUCKETS), "+Inf"]
        for (route, method), cells in sorted(self.latency.items()):
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, cell in zip(bounds, cells[:-1], strict=True):
                running += cell
                cumulative.append((bound, running))
            latency.add_metric([route, method], cumulative, sum_value=cells[-1])
        yield latency


class _Counts:
    """Counters kept elsewhere (the database health tracker, the audit log, the Idempotency-Key
    answers), read at scrape."""

    def __init__(self, health: DatabaseHealth, audit: AuditLog, idempotency: Idempotency) -> None:
        self.health = health
        self.audit = audit
        self.idempotency = idempotency

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[CounterMetricFamily]:
        errors = CounterMetricFamily(
            "loader_store_database_errors",
            "Database calls that failed because the database could not serve, by reason",
            labels=["code"],
        )
        for code, count in sorted(self.health.errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield CounterMetricFamily(
            "loader_store_audit_dropped",
            "Audit records dropped because the bounded queue was full",
            value=self.audit.dropped,
        )
        yield CounterMetricFamily(
            "loader_store_idempotent_replays",
            "Writes answered from an earlier request with the same Idempotency-Key",
            value=self.idempotency.replays,
        )


class _Fleet:
    """The fleet of every environment (read from the database at scrape, at most every few
    seconds; :meth:`loader.store.consumers.Consumers.live`): consumers per state and the lag
    (the newest revision minus the oldest a live consumer runs). Labels: app id, environment."""

    def __init__(self, consumers: Consumers) -> None:
        self.consumers = consumers

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        by_env: dict[tuple[str, str], tuple[int, list[Consumer]]] = {}
        for live in self.consumers.last_live:
            key = (str(live.app_id), live.environment)
            by_env.setdefault(key, (live.newest, []))[1].append(live.consumer)
        states = GaugeMetricFamily(
            "loader_store_consumers",
            "Live consumers (agents, runners, render --once) by environment and state",
            labels=["app", "environment", "state"],
        )
        lag = GaugeMetricFamily(
            "loader_store_rollout_lag_revisions",
            "Newest revision minus the oldest revision a live consumer runs",
            labels=["app", "environment"],
        )
        for (app, env), (newest, members) in sorted(by_env.items()):
            summary = rollout(members, newest)
            for name, count in summary.counts.items():
                states.add_metric([app, env, name], count)
            lag.add_metric([app, env], summary.lag)
        yield states
        yield lag
        c = self.consumers
        yield CounterMetricFamily(
            "loader_store_consumer_reports", "Consumer reports received", value=c.reports
        )
        yield CounterMetricFamily(
            "loader_store_consumer_rows_written",
            "Consumer rows written by the batched report writer",
            value=c.rows_written,
        )
        yield CounterMetricFamily(
            "loader_store_consumer_batches",
            "Transactions of the batched report writer",
            value=c.batches,
        )


class StoreMetrics:
    def __init__(
        self,
        health: DatabaseHealth,
        notifier: ChangeNotifier,
        audit: AuditLog,
        idempotency: Idempotency,
        consumers: Consumers | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = _Requests()
        self.registry.register(self.requests)
        Gauge(
            "loader_store_database_up",
            "1 unless the last database call failed for want of the database",
            registry=self.registry,
        ).set_function(lambda: 0.0 if health.down is not None else 1.0)
        Gauge(
            "loader_store_watchers", "Long-poll requests held open", registry=self.registry
        ).set_function(lambda: float(notifier.waiting()))
        Gauge(
            "loader_store_audit_queue", "Audit records waiting to be stored", registry=self.registry
        ).set_function(lambda: float(audit.queue_depth))
        self.registry.register(_Counts(health, audit, idempotency))
        if consumers is not None:
            self.registry.register(_Fleet(consumers))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.observe(route, method, status, seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
