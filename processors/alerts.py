"""The alerts the worker raises (pure): a campaign's complaint rate, a campaign's block rate at a domain.

Each is one warning line in the log, a metric and a record on the alerts topic; these functions make the
record and the line. The alert id is derived from what the alert says, so the same crossing raised again
by a batch read twice is the same record.
"""

from __future__ import annotations

from datetime import datetime

from processors.block_monitor import BlockPolicy, BlockRate
from processors.campaign_totals import AlertPolicy
from processors.engagement import Counts
from schemas.alerts import AlertLevel, BlockAlert, ComplaintAlert


def complaint_alert(
    campaign: str, level: AlertLevel, counts: Counts, policy: AlertPolicy, now: datetime
) -> ComplaintAlert:
    delivered = counts.get("delivered", 0)
    complaints = counts.get("complaints", 0)
    rate = complaints / delivered if delivered else 0.0
    return ComplaintAlert(
        alert_id=f"{campaign}:{level}:{complaints}",
        campaign_id=campaign,
        level=level,
        complaint_rate=round(rate, 6),
        complaints=complaints,
        delivered=delivered,
        threshold=policy.critical_rate if level is AlertLevel.CRITICAL else policy.warning_rate,
        raised_at=now,
    )


def describe_complaint_alert(alert: ComplaintAlert) -> str:
    return (
        f"complaint rate alert: campaign {alert.campaign_id} at {alert.complaint_rate * 100:.4f}% is above the "
        f"{alert.level} line of {alert.threshold * 100:.2f}% "
        f"({alert.complaints} complaints / {alert.delivered} delivered)"
    )


def block_alert(crossed: BlockRate, policy: BlockPolicy, now: datetime) -> BlockAlert:
    return BlockAlert(
        alert_id=f"{crossed.campaign_id}:block:{crossed.domain}:{crossed.attempts}",
        campaign_id=crossed.campaign_id,
        domain=crossed.domain,
        block_rate=crossed.rate,
        blocked=crossed.blocked,
        attempts=crossed.attempts,
        threshold=policy.rate,
        window_seconds=policy.window_seconds,
        top_diagnostic=crossed.top_diagnostic,
        raised_at=now,
    )


def describe_block_alert(alert: BlockAlert) -> str:
    return (
        f"block rate alert: campaign {alert.campaign_id} at {alert.domain}: {alert.blocked} of {alert.attempts} "
        f"sends blocked ({alert.block_rate * 100:.1f}%, line {alert.threshold * 100:.1f}%); "
        f"top diagnostic: {alert.top_diagnostic}"
    )
