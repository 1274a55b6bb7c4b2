"""Suppression rules (pure): which events suppress an address, and whether a send may go.

Unsubscribes, hard bounces and complaints suppress at once; blocks (a bounce whose reason is the
sender's, :mod:`schemas.bounce_reasons`) never; soft bounces after
``threshold`` consecutive ones or ``threshold`` within ``window``; a delivery
resets the soft-bounce count. Operators add (``manual``) and remove suppression
with events too; a removal also disarms every older event, so replaying the
topic after it does not suppress the address again. Applying the same event
twice changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

import msgspec

from schemas.events import (
    AnyEvent,
    Bounce,
    BounceClass,
    CampaignCancelled,
    CampaignPaused,
    CampaignQueued,
    CampaignResumed,
    Click,
    Complaint,
    Deferred,
    Delivered,
    Failed,
    Open,
    SendSkipped,
    Sent,
    SuppressionAdded,
    SuppressionRemoved,
    Unsubscribe,
    UnsubscribeScope,
)


class Reason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    SOFT_BOUNCE_THRESHOLD = "soft_bounce_threshold"
    MANUAL = "manual"


class SuppressionEntry(msgspec.Struct, frozen=True, kw_only=True):
    # Global reasons: no mail of any list goes out.
    reasons: tuple[Reason, ...] = ()
    # Lists the address unsubscribed from (list-scoped suppression).
    lists: tuple[str, ...] = ()
    since: datetime | None = None
    caused_by: str = ""
    # Soft bounces since the last delivery: (event_id, when), for threshold and idempotence.
    soft_bounces: tuple[tuple[str, datetime], ...] = ()
    # Scope ("*" for everything, else a list id) -> when an operator lifted it: older events are spent.
    cleared: dict[str, datetime] = msgspec.field(default_factory=dict)
    # The event whose change of reasons is the latest: applied again, it makes its audit record again
    # (that record may be the one Kafka refused when the change itself was kept).
    changed_by: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.reasons and not self.lists and not self.soft_bounces


@dataclass(frozen=True)
class Policy:
    soft_bounce_threshold: int = 3
    soft_bounce_window: timedelta = timedelta(days=7)
    # Bounce and complaint reports by mail that name no message we sent to that recipient: anyone can
    # write one, so they suppress nobody unless the operator says otherwise.
    trust_unattributed: bool = False


EMPTY = SuppressionEntry()
# Kinds that leave every entry as it is (:func:`apply_event`): who applies an event need not read the entry.
NEVER_CHANGES_SUPPRESSION = (
    Open,
    Click,
    Deferred,
    Failed,
    SendSkipped,
    CampaignQueued,
    CampaignPaused,
    CampaignResumed,
    CampaignCancelled,
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SuppressionEntry)


def encode_entry(entry: SuppressionEntry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes | str | None) -> SuppressionEntry:
    return _decoder.decode(data) if data else EMPTY


def _add_reason(entry: SuppressionEntry, reason: Reason, event: AnyEvent) -> SuppressionEntry:
    if reason in entry.reasons:
        return entry
    return msgspec.structs.replace(
        entry,
        reasons=(*entry.reasons, reason),
        since=entry.since or event.occurred_at,
        caused_by=entry.caused_by or event.event_id,
    )


def _add_list(entry: SuppressionEntry, list_id: str, event: AnyEvent) -> SuppressionEntry:
    if list_id in entry.lists:
        return entry
    return msgspec.structs.replace(
        entry,
        lists=(*entry.lists, list_id),
        since=entry.since or event.occurred_at,
        caused_by=entry.caused_by or event.event_id,
    )


def _list_scope(event: AnyEvent) -> str | None:
    """The list an event suppresses for, or None when it suppresses everything (or nothing)."""
    if isinstance(event, Unsubscribe) and event.scope is UnsubscribeScope.LIST and event.list_id:
        return event.list_id
    if isinstance(event, SuppressionAdded) and event.list_id:
        return event.list_id
    return None


def _is_spent(entry: SuppressionEntry, event: AnyEvent) -> bool:
    """Whether an operator lifted, after this event happened, the suppression it would cause."""
    if not entry.cleared:
        return False
    scope = _list_scope(event)
    lifted = [entry.cleared.get("*"), entry.cleared.get(scope) if scope else None]
    return any(when is not None and event.occurred_at <= when for when in lifted)


def _remove(entry: SuppressionEntry, event: SuppressionRemoved) -> SuppressionEntry:
    scope = event.list_id or "*"
    held = entry.cleared.get(scope)
    cleared = {**entry.cleared, scope: max(held, event.occurred_at) if held else event.occurred_at}
    if event.list_id:
        lists = tuple(name for name in entry.lists if name != event.list_id)
        after = msgspec.structs.replace(entry, lists=lists, cleared=cleared)
    else:
        after = SuppressionEntry(cleared=cleared)
    if not after.reasons and not after.lists:
        after = msgspec.structs.replace(after, since=None, caused_by="")
    return entry if after == entry else after


def apply_event(entry: SuppressionEntry, event: AnyEvent, policy: Policy) -> SuppressionEntry:
    """The entry after ``event``; the same object when the event changes nothing."""
    if isinstance(event, SuppressionRemoved):
        return _remove(entry, event)
    if _is_spent(entry, event):
        return entry
    match event:
        case Unsubscribe() | SuppressionAdded():
            scope = _list_scope(event)
            if scope is not None:
                return _add_list(entry, scope, event)
            reason = Reason.MANUAL if isinstance(event, SuppressionAdded) else Reason.UNSUBSCRIBED
            return _add_reason(entry, reason, event)
        case Complaint() | Bounce() if not (event.attributed or policy.trust_unattributed):
            return entry
        case Complaint():
            return _add_reason(entry, Reason.COMPLAINT, event)
        case Bounce():
            return _bounce(entry, event, policy)
        case Sent() | Delivered():
            return msgspec.structs.replace(entry, soft_bounces=()) if entry.soft_bounces else entry
        case Open() | Click() | Deferred() | Failed() | SendSkipped():
            return entry
        case CampaignQueued() | CampaignPaused() | CampaignResumed() | CampaignCancelled():
            return entry  # about a campaign: they name no recipient
        case _:
            assert_never(event)


def _bounce(entry: SuppressionEntry, event: Bounce, policy: Policy) -> SuppressionEntry:
    match event.bounce_class:
        case BounceClass.HARD:
            return _add_reason(entry, Reason.HARD_BOUNCE, event)
        case BounceClass.SOFT:
            return _soft_bounce(entry, event, policy)
        case BounceClass.BLOCK:
            # The sender was refused (blocklist, content, authentication): nothing about this address.
            return entry
        case _:
            assert_never(event.bounce_class)


def _soft_bounce(entry: SuppressionEntry, event: Bounce, policy: Policy) -> SuppressionEntry:
    if any(event_id == event.event_id for event_id, _ in entry.soft_bounces):
        return entry
    bounces = (*entry.soft_bounces, (event.event_id, event.occurred_at))
    entry = msgspec.structs.replace(entry, soft_bounces=bounces[-policy.soft_bounce_threshold :])
    window_start = event.occurred_at - policy.soft_bounce_window
    recent = [when for _, when in bounces if when >= window_start]
    # Consecutive (no delivery in between, since deliveries reset the list) or within the window.
    if len(bounces) >= policy.soft_bounce_threshold or len(recent) >= policy.soft_bounce_threshold:
        return _add_reason(entry, Reason.SOFT_BOUNCE_THRESHOLD, event)
    return entry


def suppression_reasons(entry: SuppressionEntry, list_id: str | None = None) -> list[str]:
    """Why a send to this address (for ``list_id``) must not go; empty when it may."""
    reasons = [str(r) for r in entry.reasons]
    if list_id is not None and list_id in entry.lists:
        reasons.append(f"unsubscribed:{list_id}")
    if list_id is None:
        reasons.extend(f"unsubscribed:{name}" for name in entry.lists)
    return reasons
