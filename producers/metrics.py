"""Prometheus metrics of one edge app (own registry, so several apps can live in one process)."""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BUCKET_LABELS = [floatToGoString(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]


class _Latency:
    """One route's latency: a count per bucket (the last one past every bound) and the sum of the seconds."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(_BUCKET_LABELS)
        self.total = 0.0


class RequestStats(Collector):
    """Requests per route and status, and latency per route: ``mailpulse_edge_requests`` and
    ``mailpulse_edge_request_seconds``, counted in plain Python and exposed at scrape time.

    Every request records here, on the event loop's thread only; prometheus-client's counter and
    histogram take a lock per value, about 1.8 us a request, some 4% of an open pixel's time."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, _Latency] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = _Latency()
        latency.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # a bucket holds values <= its bound
        latency.total += seconds

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily("mailpulse_edge_requests", "HTTP requests", labels=["route", "status"])
        for (route, status), count in sorted(self._requests.items()):
            requests.add_metric([route, str(status)], count)
        latency = HistogramMetricFamily("mailpulse_edge_request_seconds", "Request latency", labels=["route"])
        for route, held in sorted(self._latency.items()):
            cumulative = itertools.accumulate(held.counts)
            latency.add_metric([route], list(zip(_BUCKET_LABELS, cumulative, strict=True)), held.total)
        return [requests, latency]


@dataclass(frozen=True)
class EdgeMetrics:
    """Labelled children are cached: ``labels()`` costs microseconds per call on the hot path."""

    registry: CollectorRegistry
    requests: RequestStats
    published: Counter
    rejected_tokens: Counter
    publish_failures: Counter
    bounce_mail: Counter
    shed: Counter

    @classmethod
    def create(cls) -> EdgeMetrics:
        registry = CollectorRegistry()
        requests = RequestStats()
        registry.register(requests)
        return cls(
            registry=registry,
            requests=requests,
            published=Counter("mailpulse_edge_events_published", "Events handed to Kafka", ["kind"], registry=registry),
            rejected_tokens=Counter(
                "mailpulse_edge_rejected_tokens", "Invalid link tokens", ["route"], registry=registry
            ),
            publish_failures=Counter(
                "mailpulse_edge_publish_failures", "Records Kafka did not acknowledge", registry=registry
            ),
            shed=Counter(
                "mailpulse_edge_events_shed",
                "Fire-and-forget events dropped because the queue to Kafka was full (broker unreachable)",
                registry=registry,
            ),
            bounce_mail=Counter(
                "mailpulse_edge_bounce_mail",
                "Bounce-mail receiver: reports recorded, unattributed, kept or not kept, mail refused, retries asked, "
                "mailto: unsubscribes recorded or refused",
                ["outcome"],
                registry=registry,
            ),
        )

    @functools.cache  # noqa: B019
    def published_counter(self, kind: str) -> Any:
        return self.published.labels(kind)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.observe(route, status, seconds)

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
        shed = CounterMetricFamily(
            "mailpulse_edge_pixel_opens_shed", "Opens dropped: the helper or its queue to Kafka was full"
        )
        shed.add_metric([], values["shed"])
        lost = CounterMetricFamily(
            "mailpulse_edge_pixel_opens_lost", "Opens Kafka did not acknowledge within the delivery timeout"
        )
        lost.add_metric([], values["lost"])
        overflowed = CounterMetricFamily(
            "mailpulse_edge_pixel_batches_overflowed",
            "Batches of opens the overflow helper took: the idle helper found no idle core",
        )
        overflowed.add_metric([], values["overflowed"])
        return [published, refused, shed, lost, overflowed]
