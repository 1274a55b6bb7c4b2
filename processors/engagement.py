"""Engagement aggregates (pure): what one event adds to its campaign's counts, and the rollup of
per-partition counts into campaign totals with their complaint-rate alert level.

The counts mean what :mod:`sinks.reports` means by them over the raw events, so `mailpulse stats`
and `mailpulse report` agree. Per message, the state records which facts are known (sent, delivered,
hard or soft bounce, ...) and the hour each became known (the earliest event's hour, so the answer
does not depend on arrival order); a campaign's counts are the sum of its messages' contributions,
and an update adds ``contribution(after) - contribution(before)``. Kinds counted per event
(deferrals, opens, clicks) remember their event ids. Applying an event twice changes nothing.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import assert_never

import msgspec

from schemas.events import (
    AgentClass,
    AnyEvent,
    Bounce,
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
)
from schemas.providers import MailboxProvider
from schemas.report import PROVIDER_COUNT, REASON_COUNT, provider_count_key, reason_count_key

Counts = dict[str, int]
# Epoch hour -> counts of the events (or message facts) of that hour.
HourlyCounts = dict[int, Counts]

# A message opened more often than this forgets its oldest open ids: a replay of those could count
# them again. Real messages are opened a handful of times; the bound keeps abuse from growing state.
MAX_SEEN_EVENTS = 256

# Message facts counted once per message, at the hour the fact became known.
_COUNTED_FLAGS = (
    ("sent", "sent"),
    ("failed", "failed"),
    ("hard", "bounced_hard"),
    ("soft", "bounced_soft"),
    ("block", "blocked"),
    ("complaint", "complaints"),
    ("unsubscribe", "unsubscribes"),
    ("human_open", "opens_unique_human"),
    ("click", "clicks_unique"),
)


class MessageState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    first: dict[str, int] = msgspec.field(default_factory=dict)
    seen: tuple[str, ...] = ()


class Accumulator(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of one source partition, with the last source offset they include.

    A change with an offset at or below ``offset`` is already in: that makes re-processing after a
    crash (table written, offsets not yet committed) harmless.
    """

    offset: int = -1
    counts: Counts = msgspec.field(default_factory=dict)


def epoch_hour(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


# Per-message breakdown facts are flags too, named by the count key they add to.
_BREAKDOWN_FLAG = (REASON_COUNT, PROVIDER_COUNT)


def _flags(event: AnyEvent) -> tuple[str, ...]:
    """The facts an event makes known about its message (each counted once, at its earliest hour)."""
    match event:
        case Open():
            return ("human_open",) if event.agent_class is AgentClass.HUMAN else ()
        case Click():
            return ("click",)
        case Sent():
            return ("sent",)
        case Delivered():
            return ("delivered",)
        case Bounce():
            provider = event.mailbox_provider or MailboxProvider.OTHER
            return (
                str(event.bounce_class),
                reason_count_key(event.reason),
                provider_count_key(provider, event.bounce_class),
            )
        case Failed():
            return ("failed",)
        case Complaint():
            return ("complaint",)
        case Unsubscribe():
            return ("unsubscribe",)
        case SendSkipped():
            return ("skipped",)
        case Deferred() | SuppressionAdded() | SuppressionRemoved():
            return ()
        case CampaignQueued() | CampaignPaused() | CampaignResumed() | CampaignCancelled():
            return ()  # about the campaign, not one of its messages
        case _:
            assert_never(event)


def _per_event_keys(event: AnyEvent) -> tuple[str, ...]:
    """The counts an event adds to by itself (once per event id, however often its message had one)."""
    match event:
        case Open():
            return ("opens_total",) if event.agent_class is AgentClass.HUMAN else ("opens_total", "opens_machine")
        case Click():
            return ("clicks_total",)
        case Deferred():
            return ("deferred",)
        case (
            Sent()
            | Delivered()
            | Bounce()
            | Failed()
            | Complaint()
            | Unsubscribe()
            | SendSkipped()
            | SuppressionAdded()
            | SuppressionRemoved()
            | CampaignQueued()
            | CampaignPaused()
            | CampaignResumed()
            | CampaignCancelled()
        ):
            return ()
        case _:
            assert_never(event)


def contribution(state: MessageState) -> HourlyCounts:
    """What one message adds to its campaign, per hour. The answer is shared: do not change it."""
    return _contribution(tuple(state.first.items()))


# A message's facts take few shapes (which flags, in which hours): the events of a campaign meet the same
# ones again and again, and working each out twice per event was the worker's largest single cost.
@functools.lru_cache(maxsize=4096)
def _contribution(first_items: tuple[tuple[str, int], ...]) -> HourlyCounts:
    first = dict(first_items)
    out: HourlyCounts = {}

    def add(hour: int, key: str) -> None:
        counts = out.setdefault(hour, {})
        counts[key] = counts.get(key, 0) + 1

    for flag, key in _COUNTED_FLAGS:
        if flag in first:
            add(first[flag], key)
    for flag, hour in first_items:
        if flag.startswith(_BREAKDOWN_FLAG):
            add(hour, flag)
    reached = [first[f] for f in ("sent", "delivered") if f in first]
    if reached and "hard" not in first and "soft" not in first and "block" not in first:
        add(min(reached), "delivered")
    attempts = [first[f] for f in ("sent", "hard", "soft", "block", "failed") if f in first]
    if attempts:
        add(min(attempts), "attempted")
    elif "skipped" in first:
        add(first["skipped"], "skipped")  # never attempted: suppressed, or its campaign cancelled
    return out


def _subtract(after: HourlyCounts, before: HourlyCounts) -> HourlyCounts:
    """``after - before`` per hour and key, without zeros (no key and hour sets built: it runs per event)."""
    delta: HourlyCounts = {}
    for hour, a in after.items():
        b = before.get(hour)
        if b is None:
            changed = {key: value for key, value in a.items() if value}
        else:
            changed = {key: value - b.get(key, 0) for key, value in a.items() if value != b.get(key, 0)}
            for key, value in b.items():
                if key not in a and value:
                    changed[key] = -value
        if changed:
            delta[hour] = changed
    for hour, b in before.items():
        if hour not in after:
            changed = {key: -value for key, value in b.items() if value}
            if changed:
                delta[hour] = changed
    return delta


def apply_event(state: MessageState, event: AnyEvent) -> tuple[MessageState, HourlyCounts]:
    """The message state after ``event`` and what that adds to the campaign (empty when nothing)."""
    hour = epoch_hour(event.occurred_at)
    per_event = _per_event_keys(event)
    seen = state.seen
    if per_event:
        if event.event_id in seen:
            return state, {}
        seen = (*seen, event.event_id)[-MAX_SEEN_EVENTS:]
    first = state.first
    for flag in _flags(event):
        if flag not in first or hour < first[flag]:
            first = {**first, flag: hour}
    if first is state.first and seen is state.seen:
        return state, {}
    after = MessageState(first=first, seen=seen)
    delta = _subtract(contribution(after), contribution(state)) if first is not state.first else {}
    for key in per_event:
        counts = delta.setdefault(hour, {})
        counts[key] = counts.get(key, 0) + 1
    return after, delta


def add_counts(counts: Counts, delta: Counts) -> Counts:
    total = dict(counts)
    for key, value in delta.items():
        total[key] = total.get(key, 0) + value
    return {key: value for key, value in total.items() if value}


class Tally:
    """One count key's running total within a batch, started from its stored :class:`Accumulator`.

    Mutable: a batch adds many events to the same few keys (a campaign's totals on one partition), and
    copying the counts for every event cost more than the counting.
    """

    __slots__ = ("counts", "offset")

    def __init__(self, start: Accumulator) -> None:
        self.offset = start.offset
        self.counts = dict(start.counts)

    def add(self, delta: Counts, offset: int) -> bool:
        """Add the change made by the event at ``offset``; False (nothing added) if that event is already in."""
        if offset <= self.offset:
            return False
        counts = self.counts
        for key, value in delta.items():
            counts[key] = counts.get(key, 0) + value
        self.offset = offset
        return True

    def freeze(self) -> Accumulator:
        return Accumulator(offset=self.offset, counts={key: value for key, value in self.counts.items() if value})


_message_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(MessageState)
_acc_decoder = msgspec.json.Decoder(Accumulator)
EMPTY_MESSAGE = MessageState()
EMPTY_ACCUMULATOR = Accumulator()


def encode_state(value: msgspec.Struct) -> str:
    return _message_encoder.encode(value).decode()


def decode_message(data: str | None) -> MessageState:
    return _message_decoder.decode(data) if data else EMPTY_MESSAGE


def decode_accumulator(data: str | None) -> Accumulator:
    return _acc_decoder.decode(data) if data else EMPTY_ACCUMULATOR
