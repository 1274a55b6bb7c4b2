"""The campaign report contract: the keys both `mailpulse stats` (live, faust)
and `mailpulse report` (ClickHouse) print, and how rates derive from counts.

Counts are defined per message where a message can only be counted once
(sent, delivered, bounces, blocks, complaints, unsubscribes, unique opens and
clicks) and per distinct event_id otherwise (deferrals, opens_total,
clicks_total), so redelivered or replayed events never change a report.

Skipped sends are messages not mailed when their turn came: their recipient was suppressed, or their
campaign cancelled. One whose skip says ``possibly_mailed`` was in an SMTP transaction when a worker died,
and may have been mailed once before the skip (docs/guarantees.md).

Blocked sends (refusals whose reason is the sender's: a blocklist, content,
authentication, ...) are counted apart from bounces and are no bounce. The
breakdown counts bounced and blocked messages per reason and per mailbox
provider and class; a message refused twice for two reasons counts in both.
"""

from __future__ import annotations

from typing import Any

COUNT_KEYS: tuple[str, ...] = (
    "sent",
    "delivered",
    "deferred",
    "failed",
    "skipped",
    "bounced_hard",
    "bounced_soft",
    "blocked",
    "complaints",
    "unsubscribes",
    "opens_total",
    "opens_unique_human",
    "opens_machine",
    "clicks_total",
    "clicks_unique",
)
RATE_KEYS: tuple[str, ...] = ("open_rate", "click_rate", "bounce_rate", "block_rate", "complaint_rate")
REPORT_KEYS: tuple[str, ...] = COUNT_KEYS + RATE_KEYS
# {reason: messages} and {provider: {hard|soft|block: messages}}, beside the flat keys.
BREAKDOWN_KEYS: tuple[str, ...] = ("bounces_by_reason", "bounces_by_provider")
# How the live counts name one breakdown cell (the ClickHouse report groups by the same columns).
REASON_COUNT = "reason:"
PROVIDER_COUNT = "provider:"


def reason_count_key(reason: str) -> str:
    return f"{REASON_COUNT}{reason}"


def provider_count_key(provider: str, bounce_class: str) -> str:
    return f"{PROVIDER_COUNT}{provider}:{bounce_class}"


def breakdown(counts: dict[str, int]) -> dict[str, Any]:
    """The breakdown keys from counts named by :func:`reason_count_key` and :func:`provider_count_key`."""
    by_reason: dict[str, int] = {}
    by_provider: dict[str, dict[str, int]] = {}
    for key, value in counts.items():
        if not value:
            continue
        if key.startswith(REASON_COUNT):
            by_reason[key[len(REASON_COUNT) :]] = value
        elif key.startswith(PROVIDER_COUNT):
            provider, _, bounce_class = key[len(PROVIDER_COUNT) :].rpartition(":")
            by_provider.setdefault(provider, {})[bounce_class] = value
    return {
        "bounces_by_reason": dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))),
        "bounces_by_provider": {p: dict(sorted(c.items())) for p, c in sorted(by_provider.items())},
    }


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def with_rates(counts: dict[str, int], attempted: int) -> dict[str, int | float]:
    """Complete a report from its counts; ``attempted`` = messages sent or bounced at send time."""
    report: dict[str, int | float] = {key: int(counts.get(key, 0)) for key in COUNT_KEYS}
    delivered = int(report["delivered"])
    report["open_rate"] = _ratio(int(report["opens_unique_human"]), delivered)
    report["click_rate"] = _ratio(int(report["clicks_unique"]), delivered)
    report["bounce_rate"] = _ratio(int(report["bounced_hard"]) + int(report["bounced_soft"]), attempted)
    report["block_rate"] = _ratio(int(report["blocked"]), attempted)
    report["complaint_rate"] = _ratio(int(report["complaints"]), delivered)
    return report
