"""Prometheus metrics for one agent (its own registry: several agents may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from loader.agent.presented import AgentState


class AgentMetrics:
    def __init__(self, state: AgentState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.fetch_seconds = Histogram(
            "loader_agent_fetch_seconds",
            "Store fetches by result (304s include the long-poll hold)",
            ["result"],
            registry=self.registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
        )
        self.renders = Counter(
            "loader_agent_renders_total", "Files rewritten", ["target"], registry=self.registry
        )
        self.errors = Counter(
            "loader_agent_errors_total", "Errors by kind", ["kind"], registry=self.registry
        )
        self.revision = Gauge(
            "loader_agent_revision", "Store revision being served", registry=self.registry
        )
        staleness = Gauge(
            "loader_agent_staleness_seconds",
            "Seconds since the store last confirmed the served data (-1 before the first)",
            registry=self.registry,
        )
        staleness.set_function(lambda: -1.0 if state.age() is None else float(state.age() or 0))
        ready = Gauge("loader_agent_ready", "1 when /readyz is 200", registry=self.registry)
        ready.set_function(lambda: 1.0 if state.readiness().ready else 0.0)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
