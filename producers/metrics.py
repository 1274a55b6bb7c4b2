"""Prometheus metrics of one edge app (own registry, so several apps can live in one process)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class EdgeMetrics:
    """Labelled children are cached: ``labels()`` costs microseconds per call on the hot path."""

    registry: CollectorRegistry
    requests: Counter
    published: Counter
    rejected_tokens: Counter
    publish_failures: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> EdgeMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter("mailpulse_edge_requests", "HTTP requests", ["route", "status"], registry=registry),
            published=Counter("mailpulse_edge_events_published", "Events handed to Kafka", ["kind"], registry=registry),
            rejected_tokens=Counter(
                "mailpulse_edge_rejected_tokens", "Invalid link tokens", ["route"], registry=registry
            ),
            publish_failures=Counter(
                "mailpulse_edge_publish_failures", "Records Kafka did not acknowledge", registry=registry
            ),
            latency=Histogram(
                "mailpulse_edge_request_seconds",
                "Request latency",
                ["route"],
                registry=registry,
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            ),
        )

    @functools.cache  # noqa: B019 - one instance per app, lives as long as the app
    def request_counter(self, route: str, status: int) -> Any:
        return self.requests.labels(route, str(status))

    @functools.cache  # noqa: B019
    def latency_histogram(self, route: str) -> Any:
        return self.latency.labels(route)

    @functools.cache  # noqa: B019
    def published_counter(self, kind: str) -> Any:
        return self.published.labels(kind)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.request_counter(route, status).inc()
        self.latency_histogram(route).observe(seconds)

    def watch_pixels(self, counts: Callable[[], dict[str, int]]) -> None:
        """Expose the pixel helper's counters (it runs in another process) at scrape time."""
        self.registry.register(_PixelCollector(counts))


class _PixelCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        values = self.counts()
        published = CounterMetricFamily("mailpulse_edge_pixel_opens_published", "Opens handed to Kafka by the helper")
        published.add_metric([], values["published"])
        refused = CounterMetricFamily("mailpulse_edge_pixel_tokens_refused", "Authentic tokens of another link kind")
        refused.add_metric([], values["refused"])
        return [published, refused]
