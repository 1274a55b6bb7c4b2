"""The edge's request counts and latency histogram, counted without prometheus-client's locks, read the same."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producers.metrics import LATENCY_BUCKETS, EdgeMetrics


def samples(metrics: EdgeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_requests_are_counted_per_route_and_status() -> None:
    metrics = EdgeMetrics.create()
    for status in (200, 200, 404):
        metrics.observe_request("open_pixel", status, 0.001)
    metrics.observe_request("click", 302, 0.002)

    seen = samples(metrics)
    assert seen[("mailpulse_edge_requests_total", (("route", "open_pixel"), ("status", "200")))] == 2
    assert seen[("mailpulse_edge_requests_total", (("route", "open_pixel"), ("status", "404")))] == 1
    assert seen[("mailpulse_edge_requests_total", (("route", "click"), ("status", "302")))] == 1


def test_latency_buckets_are_cumulative_and_hold_values_up_to_their_bound() -> None:
    metrics = EdgeMetrics.create()
    for seconds in (0.0001, 0.0005, 0.0006, 0.004, 9.0):  # 0.0005 is a bound: it counts in its own bucket
        metrics.observe_request("open_pixel", 200, seconds)

    seen = samples(metrics)

    def bucket(le: str) -> float:
        return seen[("mailpulse_edge_request_seconds_bucket", (("le", le), ("route", "open_pixel")))]

    assert bucket("0.0005") == 2
    assert bucket("0.001") == 3
    assert bucket("0.005") == 4
    assert bucket(str(LATENCY_BUCKETS[-1])) == 4
    assert bucket("+Inf") == 5
    assert seen[("mailpulse_edge_request_seconds_count", (("route", "open_pixel"),))] == 5
    assert abs(seen[("mailpulse_edge_request_seconds_sum", (("route", "open_pixel"),))] - 9.0052) < 1e-9
