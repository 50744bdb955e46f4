"""The store's Prometheus metrics (``GET /metrics``), in its own registry.

Requests are counted by route *template* (``/v1/apps/{appId}/...``), never the raw path, so
no name a client put in a URL becomes a label. Nothing here carries a secret's name or value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from loader.server.idempotency import Idempotency
from loader.store.audit import AuditLog
from loader.store.consumers import Consumers
from loader.store.fleet import Consumer, rollout
from loader.store.health import DatabaseHealth
from loader.store.notifier import ChangeNotifier

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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
        self.requests = Counter(
            "loader_store_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loader_store_request_seconds",
            "Time to answer, by route template (long-polls include their hold)",
            ["route", "method"],
            registry=self.registry,
            buckets=_BUCKETS,
        )
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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once: thousands of woken long-polls answer at once.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
