"""Event contracts: one definition per event kind, JSON on the wire.

Every event carries ``event_id`` (the idempotency key of all state built from
it), ``schema_version`` and ``occurred_at`` in UTC. The ``kind`` field is the
msgspec tag, so one decoder reads any event and yields the right class.
"""

from __future__ import annotations

import enum
import os
import threading
import typing
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.bounce_reasons import BounceClass, BounceReason, Verdict
from schemas.event_fields import AgentClass, TrackingMode, UnsubscribeScope
from schemas.providers import mailbox_provider

# 2: bounces carry a reason (and the class block), deferrals a reason, failures their SMTP answer.
SCHEMA_VERSION = 2


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    event_id: str
    occurred_at: datetime
    campaign_id: str
    message_id: str
    # None in aggregate tracking mode: the event is counted per campaign only.
    recipient: str | None = None
    list_id: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)


class Open(Event, frozen=True, kw_only=True, tag="open"):
    user_agent: str = ""
    client_ip: str = ""
    agent_class: AgentClass = AgentClass.HUMAN


class Click(Event, frozen=True, kw_only=True, tag="click"):
    url: str
    user_agent: str = ""
    client_ip: str = ""
    agent_class: AgentClass = AgentClass.HUMAN


class Unsubscribe(Event, frozen=True, kw_only=True, tag="unsubscribe"):
    scope: UnsubscribeScope = UnsubscribeScope.LIST
    method: str = "one_click"


class Sent(Event, frozen=True, kw_only=True, tag="sent"):
    smtp_code: int = 250
    smtp_reply: str = ""
    attempt: int = 1


class Delivered(Event, frozen=True, kw_only=True, tag="delivered"):
    source: str = "webhook"


class Deferred(Event, frozen=True, kw_only=True, tag="deferred"):
    smtp_code: int = 0
    smtp_reply: str = ""
    attempt: int = 1
    retry_at: datetime | None = None
    reason: BounceReason = BounceReason.UNDETERMINED


class Failed(Event, frozen=True, kw_only=True, tag="failed"):
    """The sender gave up on a message: refused for good, or out of attempts. ``reason`` is the
    :class:`BounceReason` value (schema 1 wrote the SMTP answer there)."""

    reason: str = ""
    attempt: int = 1
    smtp_code: int = 0
    smtp_reply: str = ""


class Bounce(Event, frozen=True, kw_only=True, tag="bounce"):
    """A refusal of one recipient: at send time (``source="smtp"``), by mail, or from a provider.

    ``bounce_class`` follows from ``reason`` (:mod:`schemas.bounce_reasons`): hard suppresses at once,
    soft counts toward the soft-bounce policy, block suppresses nobody. Events of schema 1 have no
    reason (``undetermined``); their class still decides.
    """

    bounce_class: BounceClass
    reason: BounceReason = BounceReason.UNDETERMINED
    status: str = ""
    diagnostic: str = ""
    source: str = "smtp"
    # gmail, outlook, yahoo, icloud or other (schemas.providers): reports group by it without addresses.
    mailbox_provider: str = ""
    # False for a report by mail that could not be tied to a message we sent to this recipient
    # (schemas.attribution): recorded, and it suppresses nobody unless the operator trusts such reports.
    attributed: bool = True


def bounce_of(verdict: Verdict, diagnostic: str, source: str, **common: Any) -> Bounce:
    """The bounce a classified refusal makes: its class, reason and status from the verdict, the
    recipient's mailbox provider from its address (mail intake, sender and webhooks all make them so)."""
    return Bounce(
        **common,
        bounce_class=verdict.bounce_class,
        reason=verdict.reason,
        status=verdict.status,
        diagnostic=diagnostic[:1000],
        source=source,
        mailbox_provider=mailbox_provider(common.get("recipient")),
    )


class Complaint(Event, frozen=True, kw_only=True, tag="complaint"):
    feedback_type: str = "abuse"
    source: str = "arf"
    attributed: bool = True  # as Bounce.attributed


class SendSkipped(Event, frozen=True, kw_only=True, tag="send.skipped"):
    """Not mailed now; ``reason`` lists why, comma-separated (a suppression, the campaign's state, ...)."""

    reason: str = ""


# Among a skip's reasons when the request was found pending in the sent-log: a worker died during its
# SMTP transaction, so the mail may have gone out before the skip (docs/guarantees.md).
POSSIBLY_MAILED = "possibly_mailed"


class SuppressionAdded(Event, frozen=True, kw_only=True, tag="suppression.added"):
    """An operator suppressed an address (globally, or for ``list_id`` when it is set).

    Not about a message: ``campaign_id`` and ``message_id`` are empty.
    """

    reason: str = ""
    source: str = "operator"


class SuppressionRemoved(Event, frozen=True, kw_only=True, tag="suppression.removed"):
    """An operator lifted suppression: every reason, or only the ``list_id`` unsubscribe when it is set.

    Events that happened before it no longer suppress, even when they are replayed after it.
    """

    reason: str = ""
    source: str = "operator"


class CampaignQueued(Event, frozen=True, kw_only=True, tag="campaign.queued"):
    """``requests`` send requests of a campaign were queued on the outbox (by the intake). Not about a
    message or a recipient: ``message_id`` is empty."""

    requests: int = 0


class CampaignPaused(Event, frozen=True, kw_only=True, tag="campaign.paused"):
    """Hold the campaign's sends until it is resumed (``source``: operator or automatic; ``reason``: why)."""

    reason: str = ""
    source: str = "operator"


class CampaignResumed(Event, frozen=True, kw_only=True, tag="campaign.resumed"):
    """Send the campaign's held and remaining requests again."""

    reason: str = ""
    source: str = "operator"


class CampaignCancelled(Event, frozen=True, kw_only=True, tag="campaign.cancelled"):
    """Send nothing more of the campaign: each request left becomes ``send.skipped`` (``campaign_cancelled``).
    Final: a cancelled campaign is never resumed."""

    reason: str = ""
    source: str = "operator"


# The campaign lifecycle, as the worker's gate applies it (processors.campaign_book).
CampaignControl = CampaignPaused | CampaignResumed | CampaignCancelled


class EventKind(enum.StrEnum):
    """Every kind of event, as its ``kind`` field names it (one per class of :data:`AnyEvent`)."""

    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    SEND_SKIPPED = "send.skipped"
    SUPPRESSION_ADDED = "suppression.added"
    SUPPRESSION_REMOVED = "suppression.removed"
    CAMPAIGN_QUEUED = "campaign.queued"
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_RESUMED = "campaign.resumed"
    CAMPAIGN_CANCELLED = "campaign.cancelled"


AnyEvent = (
    Open
    | Click
    | Unsubscribe
    | Sent
    | Delivered
    | Deferred
    | Failed
    | Bounce
    | Complaint
    | SendSkipped
    | SuppressionAdded
    | SuppressionRemoved
    | CampaignQueued
    | CampaignPaused
    | CampaignResumed
    | CampaignCancelled
)
EVENT_CLASSES: tuple[type[Event], ...] = typing.get_args(AnyEvent)


class SendRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One message to one recipient, as queued on the outbox topic."""

    message_id: str
    campaign_id: str
    recipient: str
    list_id: str
    from_address: str
    subject: str
    html: str
    text: str
    tracking: TrackingMode = TrackingMode.FULL
    attempt: int = 1
    enqueued_at: datetime
    not_before: datetime | None = None
    # When its campaign's pause held it (on the held topic); None for a request not held.
    held_at: datetime | None = None
    schema_version: int = SCHEMA_VERSION


class SuppressionChange(msgspec.Struct, frozen=True, kw_only=True):
    """Audit record on the compacted suppression topic, keyed by recipient."""

    recipient: str
    suppressed: bool
    reasons: list[str]
    lists: list[str]
    since: datetime | None
    caused_by: str
    changed_at: datetime
    schema_version: int = SCHEMA_VERSION


class CampaignPartial(msgspec.Struct, frozen=True, kw_only=True):
    """The engagement counts one source partition holds for a campaign (or one of its hours).

    Absolute values, not increments: a redelivered or repeated partial changes nothing, and the
    one with the higher ``offset`` (last source offset counted) wins.
    """

    campaign_id: str
    source_partition: int
    hour: datetime | None = None
    offset: int
    counts: dict[str, int]
    schema_version: int = SCHEMA_VERSION


def utcnow() -> datetime:
    return datetime.now(UTC)


# Event ids drawn from the OS at a time. One getrandom call per id was 40 % of the pixel helper's time
# (py-spy, `make bench` edge): the edge makes one id per open and click.
IDS_PER_DRAW = 256
_drawn = threading.local()  # per thread: two threads never take the same id from one draw


def new_event_id() -> str:
    """128 random bits (the OS's CSPRNG) as 32 hex characters, like a uuid4's hex."""
    ids: list[str] | None = getattr(_drawn, "ids", None)
    if not ids:
        pool = os.urandom(16 * IDS_PER_DRAW).hex()
        ids = _drawn.ids = [pool[i : i + 32] for i in range(0, len(pool), 32)]
    return ids.pop()


def _forget_drawn_ids() -> None:
    # A forked child must not hand out the ids its parent drew and has yet to use.
    _drawn.ids = []


os.register_at_fork(after_in_child=_forget_drawn_ids)


_MESSAGE_NS = uuid.UUID("6f1c1f0e-8a47-4a0b-9b59-6a3c4a6f5d21")


def message_id_for(campaign_id: str, recipient: str) -> str:
    """Deterministic: the same campaign never gets two message ids for one address."""
    return uuid.uuid5(_MESSAGE_NS, f"{campaign_id}\x00{recipient}").hex
