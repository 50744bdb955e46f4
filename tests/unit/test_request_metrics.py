"""The store's request metrics are plain counts turned into metric families at scrape: the same
exposition prometheus-client's own Counter and Histogram give for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from loader.server.metrics import _BUCKETS, _Requests

OBSERVED = [
    ("/v1/apps/{appId}/environments/{env}/rendered", "GET", 200, 0.0004),
    ("/v1/apps/{appId}/environments/{env}/rendered", "GET", 200, 0.001),  # on a bound: le
    ("/v1/apps/{appId}/environments/{env}/rendered", "GET", 304, 29.9),
    ("/v1/apps/{appId}/environments/{env}/rendered", "GET", 401, 0.0),
    ("/v1/apps/{appId}/secrets", "POST", 200, 0.0123),
    ("/v1/apps/{appId}/secrets", "POST", 200, 2.5),
    ("/v1/health", "GET", 200, 75.0),  # past the last bound: +Inf only
]


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_the_same_exposition_as_prometheus_clients_counter_and_histogram() -> None:
    theirs = CollectorRegistry()
    counter = Counter(
        "loader_store_requests",
        "HTTP requests by route template, method and status",
        ["route", "method", "status"],
        registry=theirs,
    )
    histogram = Histogram(
        "loader_store_request_seconds",
        "Time to answer, by route template (long-polls include their hold)",
        ["route", "method"],
        registry=theirs,
        buckets=_BUCKETS,
    )
    ours = CollectorRegistry()
    requests = _Requests()
    ours.register(requests)
    for route, method, status, seconds in OBSERVED:
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route, method).observe(seconds)
        requests.observe(route, method, status, seconds)
    assert exposition(ours) == exposition(theirs)
    assert 'loader_store_requests_total{method="GET",route="/v1/health",status="200"} 1.0' in (
        exposition(ours)
    )
