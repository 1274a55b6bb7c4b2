"""The campaign-partials feed's job: every source partition's counts of a campaign rolled up in one place.

Partials are sent to their campaign's partition, so one worker holds a campaign's rollup: the latest
partial of each source partition (the one with the highest source offset wins, so a partial read again
changes nothing), per campaign and per campaign-hour. Live stats (``/stats/{campaign}``) answer from it,
and a campaign whose complaint rate crosses a bulk-sender line raises a complaint alert once per level.
"""

from __future__ import annotations

import logging

import msgspec

from processors import alerts
from processors import campaign_totals as totals
from processors import engagement as eng
from processors.feed import FeedRecord
from processors.metrics import WorkerMetrics
from processors.state_keys import RollupKey, RollupKeys
from processors.store import PartitionStore
from processors.transaction import Transaction
from schemas.alerts import AlertLevel
from schemas.campaigns import campaign_record
from schemas.codec import DecodeError, decode_campaign_partial, encode
from schemas.events import utcnow
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)


def alert_policy(settings: Settings) -> totals.AlertPolicy:
    return totals.AlertPolicy(
        settings.complaint_warning_rate, settings.complaint_critical_rate, settings.complaint_alert_min_delivered
    )


class CampaignRollup:
    def __init__(self, store: PartitionStore[RollupKey], settings: Settings, metrics: WorkerMetrics) -> None:
        self._store = store
        self._topics = Topics.for_prefix(settings.topic_prefix)
        self._policy = alert_policy(settings)
        self._auto_pause = settings.auto_pause
        self._metrics = metrics

    def apply(self, tx: Transaction, records: list[FeedRecord]) -> None:
        """Apply one batch of the campaign-partials topic, in order."""
        rollups: dict[RollupKey, tuple[totals.Rollup, int]] = {}
        campaigns: set[str] = set()

        def held(key: RollupKey, partition: int) -> totals.Rollup:
            pending = rollups.get(key)
            return pending[0] if pending else totals.decode_rollup(tx.read(self._store, key, partition))

        for record in records:
            try:
                partial = decode_campaign_partial(record.value)
            except DecodeError as exc:
                self._metrics.poison.labels("campaign-partials").inc()
                log.warning("skipping undecodable campaign partial: %s", exc)
                continue
            partition, campaign = record.message.partition, partial.campaign_id
            acc = eng.Accumulator(offset=partial.offset, counts=partial.counts)
            whole = RollupKeys.campaign(campaign)
            if partial.hour is None:
                campaigns.add(campaign)
                rollups[whole] = (
                    totals.merge_partial(held(whole, partition), partial.source_partition, acc),
                    partition,
                )
                continue
            hour = eng.epoch_hour(partial.hour)
            key = RollupKeys.hour(campaign, hour)
            rollups[key] = (totals.merge_partial(held(key, partition), partial.source_partition, acc), partition)
            rollups[whole] = (totals.with_hour(held(whole, partition), hour), partition)
        for campaign in campaigns:
            whole = RollupKeys.campaign(campaign)
            rollup, partition = rollups[whole]
            counts = totals.total(rollup.partials.values())
            level = totals.alert_level(counts, self._policy)
            if level != rollup.alert_level:
                if level.rank > rollup.alert_level.rank:
                    self._raise(tx, campaign, level, counts)
                rollups[whole] = (msgspec.structs.replace(rollup, alert_level=level), partition)
        for key, (rollup, partition) in rollups.items():
            tx.write(self._store, key, eng.encode_state(rollup), partition)

    def _raise(self, tx: Transaction, campaign: str, level: AlertLevel, counts: eng.Counts) -> None:
        pause = self._auto_pause and level is AlertLevel.CRITICAL
        alert = alerts.complaint_alert(campaign, level, counts, self._policy, utcnow(), paused=pause)
        log.warning(alerts.describe_complaint_alert(alert))
        self._metrics.alerts.labels(str(level)).inc()
        tx.produce(self._topics.alerts, key=campaign.encode(), value=encode(alert))
        if pause:
            reason = f"complaint rate {alert.complaint_rate:.2%} above the critical line {alert.threshold:.2%}"
            paused = alerts.automatic_pause(campaign, alert.alert_id, reason, alert.raised_at)
            self._metrics.auto_pauses.labels("complaint_rate").inc()
            tx.produce(self._topics.campaigns, *campaign_record(paused))
