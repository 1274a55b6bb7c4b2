"""A campaign's totals (pure): every source partition's latest counts of it, rolled up on the campaign's
partition, and the complaint-rate alert level they stand at.

Each source partition's counts arrive as absolute values with the last source offset they include
(:class:`processors.engagement.Accumulator`): the newer one wins, so a partial read twice, or an older
one read after a newer, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from processors.engagement import Accumulator, Counts, add_counts
from schemas.alerts import AlertLevel
from schemas.report import breakdown, with_rates


class Rollup(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's (or campaign-hour's) counts from every source partition."""

    partials: dict[int, Accumulator] = msgspec.field(default_factory=dict)
    hours: tuple[int, ...] = ()
    alert_level: AlertLevel = AlertLevel.NONE


@dataclass(frozen=True)
class AlertPolicy:
    warning_rate: float = 0.001
    critical_rate: float = 0.003
    min_delivered: int = 1000


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


def alert_level(counts: Counts, policy: AlertPolicy) -> AlertLevel:
    """Where the complaint rate over delivered mail stands against the policy's lines."""
    delivered = counts.get("delivered", 0)
    if delivered < policy.min_delivered:
        return AlertLevel.NONE
    rate = counts.get("complaints", 0) / delivered
    if rate > policy.critical_rate:
        return AlertLevel.CRITICAL
    if rate > policy.warning_rate:
        return AlertLevel.WARNING
    return AlertLevel.NONE


_rollup_decoder = msgspec.json.Decoder(Rollup)
EMPTY_ROLLUP = Rollup()


def decode_rollup(data: str | None) -> Rollup:
    return _rollup_decoder.decode(data) if data else EMPTY_ROLLUP
