"""The records of the campaigns topic: what an intake queued, and each pause, resume and cancel.

One partition carries every campaign's lifecycle in one order; every worker reads all of it. Keys are made
for compaction: one per campaign for its pause and resume records (the latest is its state), one for its
cancel (final, so never dropped behind a later record), and one per intake for what it queued (each kept).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from schemas.codec import encode
from schemas.events import CampaignCancelled, CampaignPaused, CampaignQueued, CampaignResumed, new_event_id, utcnow

CampaignEvent = CampaignQueued | CampaignPaused | CampaignResumed | CampaignCancelled

# A campaign's or a list's id: what the intake takes, the operator's commands check, and reports name.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a campaign or list id; None when it can."""
    if ID_PATTERN.match(value):
        return None
    return f"must be 1-128 letters, digits or ._:- (got {value!r})"


class CampaignAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


def control_event(
    action: CampaignAction,
    campaign_id: str,
    reason: str = "",
    source: str = "operator",
    event_id: str | None = None,
    at: datetime | None = None,
) -> CampaignPaused | CampaignResumed | CampaignCancelled:
    common: dict[str, Any] = {
        "event_id": event_id or new_event_id(),
        "occurred_at": at or utcnow(),
        "campaign_id": campaign_id,
        "message_id": "",
        "reason": reason[:500],
        "source": source,
    }
    match action:
        case CampaignAction.PAUSE:
            return CampaignPaused(**common)
        case CampaignAction.RESUME:
            return CampaignResumed(**common)
        case CampaignAction.CANCEL:
            return CampaignCancelled(**common)


def queued_event(campaign_id: str, message_ids: Iterable[str]) -> CampaignQueued:
    """What one intake queued; its id is derived from the messages, so the same intake run again (a
    client retrying after a timeout) counts once."""
    ids = sorted(message_ids)
    digest = hashlib.blake2b(digest_size=16)
    for message_id in ids:
        digest.update(message_id.encode() + b"\n")
    return CampaignQueued(
        event_id=f"queued-{digest.hexdigest()}",
        occurred_at=utcnow(),
        campaign_id=campaign_id,
        message_id="",
        requests=len(ids),
    )


def campaign_record(event: CampaignEvent) -> tuple[bytes, bytes]:
    """The key and value of ``event`` on the campaigns topic."""
    campaign = event.campaign_id
    match event:
        case CampaignQueued():
            key = f"{campaign}\x1fqueued\x1f{event.event_id}"
        case CampaignCancelled():
            key = f"{campaign}\x1fcancelled"
        case CampaignPaused() | CampaignResumed():
            key = f"{campaign}\x1fstate"
    return key.encode(), encode(event)


class Verdict(enum.StrEnum):
    CHANGE = "change"  # the action changes the campaign's state
    ALREADY = "already"  # the campaign is in that state already: nothing to do
    REFUSED = "refused"  # the state does not allow it (a cancelled campaign stays cancelled)


def judge(action: CampaignAction, state: str) -> tuple[Verdict, str]:
    """Whether ``action`` changes a campaign in ``state`` (active, paused or cancelled), and what to say if not."""
    match (action, state):
        case (CampaignAction.PAUSE, "active") | (CampaignAction.RESUME, "paused") | (CampaignAction.CANCEL, "active"):
            return Verdict.CHANGE, ""
        case (CampaignAction.CANCEL, "paused"):
            return Verdict.CHANGE, ""
        case (CampaignAction.PAUSE, "paused"):
            return Verdict.ALREADY, "the campaign is paused already"
        case (CampaignAction.RESUME, "active"):
            return Verdict.ALREADY, "the campaign is not paused: nothing to resume"
        case (CampaignAction.CANCEL, "cancelled"):
            return Verdict.ALREADY, "the campaign is cancelled already"
        case (_, "cancelled"):
            return Verdict.REFUSED, "the campaign is cancelled, for good: it cannot be paused or resumed"
    return Verdict.REFUSED, f"cannot {action} a campaign that is {state}"
