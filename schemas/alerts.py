"""The records of the alerts topic: a campaign's complaint rate or its block rate at a domain crossed a line."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from schemas.events import SCHEMA_VERSION


class AlertLevel(enum.StrEnum):
    """A campaign's complaint rate against the bulk-sender lines (``NONE``: below both)."""

    NONE = ""
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _ALERT_RANK[self]


_ALERT_RANK = {AlertLevel.NONE: 0, AlertLevel.WARNING: 1, AlertLevel.CRITICAL: 2}


class BlockAlert(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's share of blocked sends at one receiving domain crossed the line (a sender problem:
    a blocklist, reputation, authentication, content). On ``mailpulse.alerts``, beside complaint alerts."""

    alert_id: str
    campaign_id: str
    domain: str
    block_rate: float
    blocked: int
    attempts: int
    threshold: float
    window_seconds: float
    top_diagnostic: str
    raised_at: datetime
    # Whether this alert paused the campaign (MAILPULSE_AUTO_PAUSE).
    paused: bool = False
    schema_version: int = SCHEMA_VERSION


class ComplaintAlert(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's complaint rate crossed a mailbox providers' bulk-sender line (or fell back below)."""

    alert_id: str
    campaign_id: str
    level: AlertLevel
    complaint_rate: float
    complaints: int
    delivered: int
    threshold: float
    raised_at: datetime
    paused: bool = False  # as BlockAlert.paused
    schema_version: int = SCHEMA_VERSION
