"""The campaign report contract: the keys both `mailpulse stats` (live, faust)
and `mailpulse report` (ClickHouse) print, and how rates derive from counts.

Counts are defined per message where a message can only be counted once
(sent, delivered, bounces, complaints, unsubscribes, unique opens and clicks)
and per distinct event_id otherwise (deferrals, opens_total, clicks_total),
so redelivered or replayed events never change a report.
"""

from __future__ import annotations

COUNT_KEYS: tuple[str, ...] = (
    "sent",
    "delivered",
    "deferred",
    "failed",
    "bounced_hard",
    "bounced_soft",
    "complaints",
    "unsubscribes",
    "opens_total",
    "opens_unique_human",
    "opens_machine",
    "clicks_total",
    "clicks_unique",
)
RATE_KEYS: tuple[str, ...] = ("open_rate", "click_rate", "bounce_rate", "complaint_rate")
REPORT_KEYS: tuple[str, ...] = COUNT_KEYS + RATE_KEYS


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def with_rates(counts: dict[str, int], attempted: int) -> dict[str, int | float]:
    """Complete a report from its counts; ``attempted`` = messages sent or bounced at send time."""
    report: dict[str, int | float] = {key: int(counts.get(key, 0)) for key in COUNT_KEYS}
    delivered = int(report["delivered"])
    report["open_rate"] = _ratio(int(report["opens_unique_human"]), delivered)
    report["click_rate"] = _ratio(int(report["clicks_unique"]), delivered)
    report["bounce_rate"] = _ratio(int(report["bounced_hard"]) + int(report["bounced_soft"]), attempted)
    report["complaint_rate"] = _ratio(int(report["complaints"]), delivered)
    return report
