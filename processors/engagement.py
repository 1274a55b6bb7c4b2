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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.events import AgentClass, AnyEvent, Bounce, Click, Deferred, Open
from schemas.providers import MailboxProvider
from schemas.report import PROVIDER_COUNT, REASON_COUNT, breakdown, provider_count_key, reason_count_key, with_rates

Counts = dict[str, int]
# Epoch hour -> counts of the events (or message facts) of that hour.
HourlyCounts = dict[int, Counts]

# A message opened more often than this forgets its oldest open ids: a replay of those could count
# them again. Real messages are opened a handful of times; the bound keeps abuse from growing state.
MAX_SEEN_EVENTS = 256

_FLAG_OF_KIND = {
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "complaint": "complaint",
    "unsubscribe": "unsubscribe",
}
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


class Rollup(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's (or campaign-hour's) counts from every source partition."""

    partials: dict[int, Accumulator] = msgspec.field(default_factory=dict)
    hours: tuple[int, ...] = ()
    alert_level: str = ""


@dataclass(frozen=True)
class AlertPolicy:
    warning_rate: float = 0.001
    critical_rate: float = 0.003
    min_delivered: int = 1000


def epoch_hour(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def hour_key(campaign: str, hour: int) -> str:
    """The rollup key of one campaign-hour (the campaign's own rollup is keyed by the bare id)."""
    return f"{campaign}\x1f{hour}"


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


# Per-message breakdown facts are flags too, named by the count key they add to.
_BREAKDOWN_FLAG = (REASON_COUNT, PROVIDER_COUNT)


def _flags(event: AnyEvent) -> tuple[str, ...]:
    if isinstance(event, Bounce):
        provider = event.mailbox_provider or MailboxProvider.OTHER
        return (
            str(event.bounce_class),
            reason_count_key(event.reason),
            provider_count_key(provider, event.bounce_class),
        )
    if isinstance(event, Open):
        return ("human_open",) if event.agent_class is AgentClass.HUMAN else ()
    if isinstance(event, Click):
        return ("click",)
    flag = _FLAG_OF_KIND.get(event.kind)
    return (flag,) if flag is not None else ()


def _per_event_keys(event: AnyEvent) -> tuple[str, ...]:
    if isinstance(event, Open):
        return ("opens_total",) if event.agent_class is AgentClass.HUMAN else ("opens_total", "opens_machine")
    if isinstance(event, Click):
        return ("clicks_total",)
    if isinstance(event, Deferred):
        return ("deferred",)
    return ()


def contribution(state: MessageState) -> HourlyCounts:
    """What one message adds to its campaign, per hour."""
    first = state.first
    out: HourlyCounts = {}

    def add(hour: int, key: str) -> None:
        counts = out.setdefault(hour, {})
        counts[key] = counts.get(key, 0) + 1

    for flag, key in _COUNTED_FLAGS:
        if flag in first:
            add(first[flag], key)
    for flag, hour in first.items():
        if flag.startswith(_BREAKDOWN_FLAG):
            add(hour, flag)
    reached = [first[f] for f in ("sent", "delivered") if f in first]
    if reached and "hard" not in first and "soft" not in first and "block" not in first:
        add(min(reached), "delivered")
    attempts = [first[f] for f in ("sent", "hard", "soft", "block", "failed") if f in first]
    if attempts:
        add(min(attempts), "attempted")
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


def merge_partial(rollup: Rollup, partition: int, partial: Accumulator) -> Rollup:
    """The rollup with ``partition``'s latest counts; the same object when ``partial`` is not newer."""
    held = rollup.partials.get(partition)
    if held is not None and held.offset >= partial.offset:
        return rollup
    return msgspec.structs.replace(rollup, partials={**rollup.partials, partition: partial})


def with_hour(rollup: Rollup, hour: int) -> Rollup:
    if hour in rollup.hours:
        return rollup
    return msgspec.structs.replace(rollup, hours=tuple(sorted((*rollup.hours, hour))))


def total(partials: Iterable[Accumulator]) -> Counts:
    out: Counts = {}
    for partial in partials:
        out = add_counts(out, partial.counts)
    return out


def report(counts: Counts) -> dict[str, Any]:
    """The campaign report (the keys of :data:`schemas.report.REPORT_KEYS` and the breakdown) from
    rolled-up counts."""
    return {**with_rates(counts, attempted=counts.get("attempted", 0)), **breakdown(counts)}


def alert_level(counts: Counts, policy: AlertPolicy) -> str:
    """``critical``, ``warning`` or ``""`` for the complaint rate over delivered mail."""
    delivered = counts.get("delivered", 0)
    if delivered < policy.min_delivered:
        return ""
    rate = counts.get("complaints", 0) / delivered
    if rate > policy.critical_rate:
        return "critical"
    if rate > policy.warning_rate:
        return "warning"
    return ""


_LEVEL_ORDER = {"": 0, "warning": 1, "critical": 2}


def is_escalation(before: str, after: str) -> bool:
    return _LEVEL_ORDER[after] > _LEVEL_ORDER[before]


_message_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(MessageState)
_acc_decoder = msgspec.json.Decoder(Accumulator)
_rollup_decoder = msgspec.json.Decoder(Rollup)
EMPTY_MESSAGE = MessageState()
EMPTY_ACCUMULATOR = Accumulator()
EMPTY_ROLLUP = Rollup()


def encode_state(value: msgspec.Struct) -> str:
    return _message_encoder.encode(value).decode()


def decode_message(data: str | None) -> MessageState:
    return _message_decoder.decode(data) if data else EMPTY_MESSAGE


def decode_accumulator(data: str | None) -> Accumulator:
    return _acc_decoder.decode(data) if data else EMPTY_ACCUMULATOR


def decode_rollup(data: str | None) -> Rollup:
    return _rollup_decoder.decode(data) if data else EMPTY_ROLLUP
