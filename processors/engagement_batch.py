"""One batch's engagement updates, written to the engagement table together at the end of the batch.

Per source partition the table holds each message's facts and the campaign's counts (in all and per
hour), each count with the last source offset it includes (:class:`processors.engagement.Accumulator`):
an event read again after a crash finds its offset already in and adds nothing. The counts a batch could
have changed are published as :class:`schemas.events.CampaignPartial` records, absolute values keyed by
campaign, partition and hour, for the campaign rollup (:mod:`processors.rollup`).
"""

from __future__ import annotations

from processors import engagement as eng
from processors.state_keys import EngagementKey, EngagementKeys
from processors.store import PartitionStore
from processors.transaction import Transaction
from schemas.events import AnyEvent, CampaignPartial

# A count key's campaign, source partition and hour (None: the campaign's total).
CountOf = tuple[str, int, int | None]
_NOTHING: eng.Counts = {}  # no change to a count (never written to)


class EngagementBatch:
    """Counts are written before message states: their changelog records share a partition, so a crash
    that keeps a message state kept the counts it led to as well."""

    def __init__(self, tx: Transaction, store: PartitionStore[EngagementKey]) -> None:
        self._tx, self._store = tx, store
        self.messages: dict[EngagementKey, tuple[eng.MessageState, int]] = {}
        self.counts: dict[EngagementKey, tuple[eng.Tally, int]] = {}
        # Count keys whose latest value must be (re)published: everything a batch could have changed,
        # also when a redelivery finds it already counted, so a lost publish is repaired.
        self.touched: dict[EngagementKey, CountOf] = {}
        self._keys: dict[CountOf, tuple[EngagementKey, CountOf]] = {}

    def _message(self, key: EngagementKey, partition: int) -> eng.MessageState:
        held = self.messages.get(key)
        return held[0] if held else eng.decode_message(self._tx.read(self._store, key, partition))

    def add(self, event: AnyEvent, partition: int, offset: int) -> None:
        """Count ``event``, read at ``offset`` of source ``partition`` (it has a message and a campaign)."""
        campaign = event.campaign_id
        key = EngagementKeys.message(partition, event.message_id)
        before = self._message(key, partition)
        after, delta = eng.apply_event(before, event)
        if after is not before:
            self.messages[key] = (after, partition)
        if len(delta) == 1:
            (totals,) = delta.values()  # most events: one hour's change (Tally.add only reads it)
        else:
            totals = {}
            for hour_delta in delta.values():
                totals = eng.add_counts(totals, hour_delta)
        self._count(self._key(campaign, partition, None), totals, offset)
        hours = {eng.epoch_hour(event.occurred_at), *after.first.values(), *delta}
        for hour in hours:
            self._count(self._key(campaign, partition, hour), delta.get(hour, _NOTHING), offset)

    def _key(self, campaign: str, partition: int, hour: int | None) -> tuple[EngagementKey, CountOf]:
        """A count's key and what it counts; made once per batch (a batch meets the same few again and again)."""
        what = (campaign, partition, hour)
        made = self._keys.get(what)
        if made is None:
            key = (
                EngagementKeys.totals(partition, campaign)
                if hour is None
                else EngagementKeys.hour(partition, campaign, hour)
            )
            made = self._keys[what] = (key, what)
        return made

    def _count(self, count: tuple[EngagementKey, CountOf], delta: eng.Counts, offset: int) -> None:
        key, what = count
        partition = what[1]
        if delta:  # an untouched count is read once, when write() publishes it
            held = self.counts.get(key)
            if held is not None:
                held[0].add(delta, offset)
            else:
                tally = eng.Tally(eng.decode_accumulator(self._tx.read(self._store, key, partition)))
                if tally.add(delta, offset):
                    self.counts[key] = (tally, partition)
        self.touched[key] = what

    def write(self) -> list[CampaignPartial]:
        """Write the batch's counts and message states; the partials to publish."""
        counted: dict[EngagementKey, eng.Accumulator] = {}
        for key, (tally, partition) in self.counts.items():
            counted[key] = tally.freeze()
            self._tx.write(self._store, key, eng.encode_state(counted[key]), partition)
        for key, (state, partition) in self.messages.items():
            self._tx.write(self._store, key, eng.encode_state(state), partition)
        partials = []
        for key, (campaign, partition, hour) in self.touched.items():
            acc = counted.get(key)
            if acc is None:  # not changed by this batch: published as stored
                acc = eng.decode_accumulator(self._tx.read(self._store, key, partition))
            if acc.offset < 0:
                continue
            partials.append(
                CampaignPartial(
                    campaign_id=campaign,
                    source_partition=partition,
                    hour=None if hour is None else eng.hour_start(hour),
                    offset=acc.offset,
                    counts=acc.counts,
                )
            )
        return partials
