"""The events feed's job: each batch of events applied to the suppression and engagement tables.

Suppression first, for the whole batch: the sender reads that table directly, so an unsubscribe stops
mail as soon as this pass reaches it, before the slower engagement pass. Each change of an address's
suppression is published on the audit topic (``<prefix>.suppression``); the batch's engagement counts
go out as campaign partials for the rollup; a campaign's block rate crossing its line at a domain
raises a block alert.

Applying a batch twice (a crash before its marks were written) changes nothing: suppression is
idempotent by event id, counts by source offset; the audit record of a change applied again is made
again, since it may be the record Kafka refused while the change itself was kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import msgspec

from processors import alerts
from processors.block_monitor import BlockMonitor, BlockPolicy, BlockRate
from processors.engagement import epoch_hour
from processors.engagement_batch import EngagementBatch
from processors.feed import FeedRecord
from processors.metrics import WorkerMetrics
from processors.routing import partition_for
from processors.state_keys import Address, EngagementKey, address
from processors.store import PartitionStore
from processors.suppression import (
    NEVER_CHANGES_SUPPRESSION,
    Policy,
    SuppressionEntry,
    apply_event,
    decode_entry,
    encode_entry,
    suppression_reasons,
)
from processors.transaction import Transaction
from schemas.alerts import BlockAlert
from schemas.campaigns import campaign_record
from schemas.codec import DecodeError, decode_event, encode
from schemas.events import AnyEvent, CampaignPartial, SuppressionChange, utcnow
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)


def suppression_policy(settings: Settings) -> Policy:
    return Policy(
        settings.soft_bounce_threshold,
        timedelta(days=settings.soft_bounce_window_days),
        trust_unattributed=settings.trust_unattributed_bounces,
    )


def block_policy(settings: Settings) -> BlockPolicy:
    return BlockPolicy(
        settings.block_alert_rate, settings.block_alert_window_seconds, settings.block_alert_min_attempts
    )


def pause_policy(settings: Settings) -> BlockPolicy:
    return BlockPolicy(
        settings.auto_pause_block_rate, settings.block_alert_window_seconds, settings.block_alert_min_attempts
    )


def audit_record(recipient: Address, entry: SuppressionEntry, event: AnyEvent) -> SuppressionChange:
    reasons = suppression_reasons(entry)
    return SuppressionChange(
        recipient=recipient,
        suppressed=bool(reasons),
        reasons=reasons,
        lists=list(entry.lists),
        since=entry.since,
        caused_by=event.event_id,
        # The event's time, not ours: the same change made again is the same record.
        changed_at=event.occurred_at,
    )


class EventTracker:
    def __init__(
        self,
        suppression: PartitionStore[Address],
        engagement: PartitionStore[EngagementKey],
        settings: Settings,
        metrics: WorkerMetrics,
        on_suppressed: Callable[[str], None] | None = None,
    ) -> None:
        """``on_suppressed(address)`` is called for each recipient whose suppression a batch changed: mail to
        them handed over before is to be checked again (:meth:`processors.courier.Courier.recheck`)."""
        self._suppression, self._engagement = suppression, engagement
        self._on_suppressed = on_suppressed or (lambda address: None)
        self._topics = Topics.for_prefix(settings.topic_prefix)
        self._partitions = settings.topic_partitions
        self._policy = suppression_policy(settings)
        # The block alert's line, and the line that pauses a campaign (MAILPULSE_AUTO_PAUSE) over the same window.
        lines = (block_policy(settings), pause_policy(settings)) if settings.auto_pause else (block_policy(settings),)
        self._blocks = BlockMonitor(*lines)
        self._metrics = metrics

    def apply(self, tx: Transaction, records: list[FeedRecord]) -> None:
        """Apply one batch of the events topic, in order."""
        decoded: list[tuple[AnyEvent, FeedRecord]] = []
        changes: list[SuppressionChange] = []
        for record in records:
            try:
                event = decode_event(record.value)
            except DecodeError as exc:
                self._metrics.poison.labels("events").inc()
                log.warning("skipping undecodable event at offset %s: %s", record.message.offset, exc)
                continue
            change = self._track_suppression(tx, event, record.message.partition)
            if change is not None:
                changes.append(change)
            decoded.append((event, record))
            crossings = self._blocks.observe_each(event)
            if crossings[0] is not None:
                self._alert(tx, alerts.block_alert(crossings[0], self._blocks.policies[0], utcnow()))
            if len(crossings) > 1 and crossings[1] is not None:
                self._pause(tx, crossings[1], self._blocks.policies[1])
        batch = EngagementBatch(tx, self._engagement)
        for event, record in decoded:
            if event.message_id and event.campaign_id:
                batch.add(event, record.message.partition, record.message.offset)
        for change in changes:
            tx.produce(self._topics.suppression, key=change.recipient.encode(), value=encode(change))
            self._on_suppressed(change.recipient)
        for partial in batch.write():
            self._publish(tx, partial)
        self._metrics.events.inc(len(records))

    def _pause(self, tx: Transaction, crossed: BlockRate, policy: BlockPolicy) -> None:
        alert = alerts.block_alert(crossed, policy, utcnow(), paused=True)
        self._alert(tx, alert)
        reason = f"block rate {crossed.rate:.1%} at {crossed.domain} (line {alert.threshold:.1%})"
        pause = alerts.automatic_pause(alert.campaign_id, alert.alert_id, reason, alert.raised_at)
        self._metrics.auto_pauses.labels("block_rate").inc()
        tx.produce(self._topics.campaigns, *campaign_record(pause))

    def _alert(self, tx: Transaction, alert: BlockAlert) -> None:
        log.warning(alerts.describe_block_alert(alert))
        self._metrics.block_alerts.inc()
        tx.produce(self._topics.alerts, key=alert.campaign_id.encode(), value=encode(alert))

    def _track_suppression(self, tx: Transaction, event: AnyEvent, partition: int) -> SuppressionChange | None:
        """Apply ``event`` to its recipient's entry; the audit record when the entry's reasons changed."""
        if not event.recipient or isinstance(event, NEVER_CHANGES_SUPPRESSION):
            return None  # most events (opens, clicks): their entry need not even be read
        key = address(event.recipient)
        before = decode_entry(tx.read(self._suppression, key, partition))
        after = apply_event(before, event, self._policy)
        if after is before:
            # Applied before (a batch read again): its audit record is made again.
            return audit_record(key, before, event) if before.changed_by == event.event_id else None
        changed = suppression_reasons(after) != suppression_reasons(before)
        if changed:
            after = msgspec.structs.replace(after, changed_by=event.event_id)
        tx.write(self._suppression, key, encode_entry(after).decode(), partition)
        if not changed:
            return None
        reasons = suppression_reasons(after)
        # Debug: at campaign volume one line per change drowns the log; the audit topic and the metric keep them.
        log.debug("suppression changed for a recipient: %s", ",".join(reasons) or "cleared")
        self._metrics.suppression_changes.labels("suppressed" if reasons else "cleared").inc()
        return audit_record(key, after, event)

    def _publish(self, tx: Transaction, partial: CampaignPartial) -> None:
        hour = "t" if partial.hour is None else str(epoch_hour(partial.hour))
        tx.produce(
            self._topics.campaign_partials,
            key=f"{partial.campaign_id}|{partial.source_partition}|{hour}".encode(),
            value=encode(partial),
            # The campaign's partition: one worker rolls up all of a campaign's partials.
            partition=partition_for(partial.campaign_id.encode(), self._partitions),
        )
