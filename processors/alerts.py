"""The alerts the worker raises (pure): a campaign's complaint rate, a campaign's block rate at a domain.

Each is one warning line in the log, a metric and a record on the alerts topic; these functions make the
record and the line. The alert id is derived from what the alert says, so the same crossing raised again
by a batch read twice is the same record.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from processors.block_monitor import BlockPolicy, BlockRate
from processors.campaign_totals import AlertPolicy
from processors.engagement import Counts
from schemas.alerts import AlertLevel, BlockAlert, ComplaintAlert
from schemas.campaigns import CampaignAction, control_event
from schemas.events import CampaignPaused


def complaint_alert(
    campaign: str, level: AlertLevel, counts: Counts, policy: AlertPolicy, now: datetime, paused: bool = False
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
        paused=paused,
    )


def describe_complaint_alert(alert: ComplaintAlert) -> str:
    return (
        f"complaint rate alert: campaign {alert.campaign_id} at {alert.complaint_rate * 100:.4f}% is above the "
        f"{alert.level} line of {alert.threshold * 100:.2f}% "
        f"({alert.complaints} complaints / {alert.delivered} delivered)"
        + ("; the campaign is paused" if alert.paused else "")
    )


def block_alert(crossed: BlockRate, policy: BlockPolicy, now: datetime, paused: bool = False) -> BlockAlert:
    return BlockAlert(
        alert_id=f"{crossed.campaign_id}:block{':pause' if paused else ''}:{crossed.domain}:{crossed.attempts}",
        campaign_id=crossed.campaign_id,
        domain=crossed.domain,
        block_rate=crossed.rate,
        blocked=crossed.blocked,
        attempts=crossed.attempts,
        threshold=policy.rate,
        window_seconds=policy.window_seconds,
        top_diagnostic=crossed.top_diagnostic,
        raised_at=now,
        paused=paused,
    )


def describe_block_alert(alert: BlockAlert) -> str:
    return (
        f"block rate alert: campaign {alert.campaign_id} at {alert.domain}: {alert.blocked} of {alert.attempts} "
        f"sends blocked ({alert.block_rate * 100:.1f}%, line {alert.threshold * 100:.1f}%); "
        f"top diagnostic: {alert.top_diagnostic}" + ("; the campaign is paused" if alert.paused else "")
    )


def automatic_pause(campaign: str, alert_id: str, reason: str, now: datetime) -> CampaignPaused:
    """The pause an alert makes (MAILPULSE_AUTO_PAUSE). Its id derives from the alert's, so the same crossing
    seen again (a batch read twice) is the same event, which the campaign book applies once."""
    event_id = hashlib.blake2b(f"auto-pause\x00{alert_id}".encode(), digest_size=16).hexdigest()
    pause = control_event(CampaignAction.PAUSE, campaign, reason=reason, source="automatic", event_id=event_id, at=now)
    assert isinstance(pause, CampaignPaused)
    return pause
