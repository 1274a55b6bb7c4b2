"""Each campaign's state, as its lifecycle events say (pure): active, paused or cancelled, and what was queued.

Every worker reads the whole campaigns topic into its own book (:mod:`processors.control_feed`), so the
sender's gate on any partition knows every campaign's state. A pause holds the campaign's sends (they wait
on the held topic, :mod:`processors.held`); a resume sends them; a cancel is final: what is left becomes
``send.skipped`` and a later resume or pause changes nothing. Applying an event twice changes nothing, and
reading the compacted topic again from the start rebuilds the same book (the cancel has a key of its own,
so compaction never drops it behind a later record).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import AnyEvent, CampaignCancelled, CampaignPaused, CampaignQueued, CampaignResumed

# Why the gate holds or skips a request of a campaign that is not active.
CAMPAIGN_PAUSED = "campaign_paused"
CAMPAIGN_CANCELLED = "campaign_cancelled"


class CampaignState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


@dataclass
class CampaignStatus:
    campaign_id: str
    state: CampaignState = CampaignState.ACTIVE
    # When the current state began, why, and by whom (operator or automatic); the event that made it.
    since: datetime | None = None
    reason: str = ""
    source: str = ""
    changed_by: str = ""
    paused_at: datetime | None = None
    cancelled_at: datetime | None = None
    queued: int = 0
    _queued_by: set[str] = field(default_factory=set, repr=False)
    # The control events applied: one seen again (a pause re-made from a batch read twice) changes nothing,
    # even when the campaign was resumed since.
    _applied: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "state": str(self.state),
            "since": self.since.isoformat() if self.since else None,
            "reason": self.reason,
            "source": self.source,
            "changed_by": self.changed_by or None,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "cancelled_at": self.cancelled_at.isoformat() if self.cancelled_at else None,
            "queued": self.queued,
        }


class CampaignBook:
    def __init__(self) -> None:
        self._campaigns: dict[str, CampaignStatus] = {}

    def apply(self, event: AnyEvent) -> bool:
        """Apply one event of the campaigns topic; True when a campaign's state changed."""
        if not event.campaign_id:
            return False
        status = self._campaigns.get(event.campaign_id)
        if status is None:
            status = self._campaigns[event.campaign_id] = CampaignStatus(event.campaign_id)
        match event:
            case CampaignQueued():
                if event.event_id not in status._queued_by:
                    status._queued_by.add(event.event_id)
                    status.queued += event.requests
                return False
            case CampaignPaused():
                if self._seen(status, event) or status.state is not CampaignState.ACTIVE:
                    return False  # already paused, or cancelled for good
                status.paused_at = event.occurred_at
                return self._change(status, CampaignState.PAUSED, event)
            case CampaignResumed():
                if self._seen(status, event) or status.state is not CampaignState.PAUSED:
                    return False
                return self._change(status, CampaignState.ACTIVE, event)
            case CampaignCancelled():
                if status.state is CampaignState.CANCELLED:
                    return False
                status.cancelled_at = event.occurred_at
                return self._change(status, CampaignState.CANCELLED, event)
            case _:
                return False  # the campaigns topic carries campaign events only

    @staticmethod
    def _seen(status: CampaignStatus, event: AnyEvent) -> bool:
        seen = event.event_id in status._applied
        status._applied.add(event.event_id)
        return seen

    @staticmethod
    def _change(
        status: CampaignStatus, state: CampaignState, event: CampaignPaused | CampaignResumed | CampaignCancelled
    ) -> bool:
        status.state, status.since, status.changed_by = state, event.occurred_at, event.event_id
        status.reason, status.source = event.reason, event.source
        return True

    def state(self, campaign_id: str) -> CampaignState:
        status = self._campaigns.get(campaign_id)
        return status.state if status is not None else CampaignState.ACTIVE

    def reasons(self, campaign_id: str) -> list[str]:
        """Why a request of this campaign must not be mailed now (empty: it may)."""
        status = self._campaigns.get(campaign_id)
        if status is None or status.state is CampaignState.ACTIVE:
            return []
        return [CAMPAIGN_PAUSED if status.state is CampaignState.PAUSED else CAMPAIGN_CANCELLED]

    def status(self, campaign_id: str) -> CampaignStatus | None:
        return self._campaigns.get(campaign_id)

    def all(self) -> list[CampaignStatus]:
        return sorted(self._campaigns.values(), key=lambda s: s.campaign_id)
