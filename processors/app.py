"""The faust app: events (suppression and engagement), campaign rollup, gated sender, retries.

faust holds the tables (changelogs, recovery, rebalances) and runs no agent; events, campaign
partials, send requests and retries are read by :class:`processors.partition_feed.PartitionFeed`
consumers beside it, on the partitions faust gave this worker.

Wiring only; the rules live in :mod:`processors.suppression`, :mod:`processors.engagement`,
:mod:`processors.delivery` and :mod:`processors.render`, the HTTP views in :mod:`processors.views`;
SMTP runs in the delivery process of :mod:`processors.courier`.

At-least-once, one batch at a time per topic (faust's ``exactly_once`` has open duplicate bugs on
rebalance); state is made idempotent by event id, message id and source offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import faust
import msgspec

from processors import engagement as eng
from processors.block_monitor import BlockMonitor, BlockPolicy, BlockRate
from processors.courier import Courier, Delivered
from processors.delivery import (
    SENT_LOG_PENDING,
    RetryPolicy,
    decide,
    sent_log_state,
    sent_log_value,
    skipped,
)
from processors.metrics import WorkerMetrics
from processors.output import Output
from processors.partition_feed import FeedMessage, FeedRecord, Handler, PartitionFeed, ResumeFrom
from processors.ratelimit import DomainLimits, RateLimiter, recipient_domain
from processors.routing import partition_for
from processors.suppression import (
    Policy,
    SuppressionEntry,
    apply_event,
    decode_entry,
    encode_entry,
    suppression_reasons,
)
from processors.views import register_views
from schemas.codec import DecodeError, decode_campaign_partial, decode_event, decode_send_request, encode
from schemas.events import (
    AnyEvent,
    BlockAlert,
    CampaignPartial,
    ComplaintAlert,
    SendRequest,
    SuppressionChange,
    utcnow,
)
from schemas.keys import normalize_address, recipient_key
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)

# A send whose domain slot is further out than this goes through the retry topic instead of holding its batch.
MAX_RATE_WAIT_SECONDS = 1.0
# Gating a batch gives the loop back this often, for the hand-offs of the batch before it still sending.
GATE_YIELD_EVERY = 128


# Applies one batch's records in order (table writes through the Output, not yet flushed).
Apply = Callable[[Sequence[Any]], None]


def create_app(settings: Settings) -> faust.App:
    names = Topics.for_prefix(settings.topic_prefix)
    app = faust.App(
        names.processors_app,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=settings.table_store,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # A worker that died holds its partitions (and the suppression they gate) until this passes.
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_seconds / 3),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # faust binds every interface by default
        web_port=settings.worker_web_port,
        web_in_thread=False,
        autodiscover=False,
    )

    # Keyed like the topics feeding them: each worker holds the state of exactly the partitions it
    # consumes. JSON keys and string values: faust decodes changelog records as JSON when it recovers
    # a table, whatever the schema says, so raw bytes could not be restored after a restart.
    table_schema: faust.Schema = faust.Schema(
        key_type=str, value_type=str, key_serializer="json", value_serializer="json"
    )

    def table(name: str) -> Any:
        return app.Table(name, partitions=settings.topic_partitions, schema=table_schema)

    suppression = table("suppression")
    sent_log = table("sent-log")
    # Per source partition: message states "m|p|message" and counts "t|p|campaign", "h|p|campaign|hour".
    engagement = table("engagement")
    # Per campaign (on the campaign's partition): every source partition's counts, and per campaign-hour.
    campaign_totals = table("campaign-totals")

    policy = Policy(
        settings.soft_bounce_threshold,
        timedelta(days=settings.soft_bounce_window_days),
        trust_unattributed=settings.trust_unattributed_bounces,
    )
    alert_policy = eng.AlertPolicy(
        settings.complaint_warning_rate, settings.complaint_critical_rate, settings.complaint_alert_min_delivered
    )
    blocks = BlockMonitor(
        BlockPolicy(settings.block_alert_rate, settings.block_alert_window_seconds, settings.block_alert_min_attempts)
    )
    retry_policy = RetryPolicy(max_attempts=settings.max_send_attempts, base_seconds=settings.retry_base_seconds)
    metrics = WorkerMetrics()
    courier = Courier(settings, on_exit=metrics.delivery_exits.inc)
    metrics.delivery_in_flight.set_function(courier.in_flight)

    @app.task
    async def start_delivery() -> None:
        # Spawned with the worker, not by the first message: its start would delay that campaign's first
        # sends, and a relay that is down shows in the log at once.
        await courier.start()

    output = Output(settings)
    rates = dict(settings.domain_rate_limits)
    default_rate = rates.pop("*", None)
    limits = DomainLimits(rates, default=default_rate)
    # Booked when a batch is gated: a send whose slot is too far out goes through the retry topic.
    limiter = RateLimiter(limits, burst=settings.domain_burst)
    # Booked again at the hand-off, on the clock the mail really goes by: a batch's sends start only once
    # its pending marks are acknowledged, some milliseconds after the gate, and batches overlap, so slots
    # counted from the gate let a late burst and the slot after it go out together.
    pacer = RateLimiter(limits, burst=settings.domain_burst)

    def track_suppression(event: AnyEvent, source: Any) -> SuppressionChange | None:
        if not event.recipient:
            return None
        address = normalize_address(event.recipient)
        before = decode_entry(output.read(suppression, address, source))
        after = apply_event(before, event, policy)
        if after is before:
            # Applied before (a batch read again): its audit record is made again, since it may be the
            # record Kafka refused; the audit topic and history table keep one per change.
            return audit(address, before, event) if before.changed_by == event.event_id else None
        changed = suppression_reasons(after) != suppression_reasons(before)
        if changed:
            after = msgspec.structs.replace(after, changed_by=event.event_id)
        output.write(suppression, address, encode_entry(after).decode(), source)
        if not changed:
            return None
        reasons = suppression_reasons(after)
        # Debug: at campaign volume one line per change drowns the log; the audit topic and the metric keep them.
        log.debug("suppression changed for a recipient: %s", ",".join(reasons) or "cleared")
        metrics.suppression_changes.labels("suppressed" if reasons else "cleared").inc()
        return audit(address, after, event)

    def audit(address: str, entry: SuppressionEntry, event: AnyEvent) -> SuppressionChange:
        reasons = suppression_reasons(entry)
        return SuppressionChange(
            recipient=address,
            suppressed=bool(reasons),
            reasons=reasons,
            lists=list(entry.lists),
            since=entry.since,
            caused_by=event.event_id,
            # The event's time, not ours: the same change made again is the same record.
            changed_at=event.occurred_at,
        )

    class EngagementBatch:
        """One batch's engagement updates, written to the table together at the end.

        Counts are written before message states: their changelog records share a partition, so a
        crash that keeps a message state kept the counts it led to as well.
        """

        def __init__(self) -> None:
            self.messages: dict[str, tuple[eng.MessageState, Any]] = {}
            self.counts: dict[str, tuple[eng.Tally, Any]] = {}
            # Count keys whose latest value must be (re)published: everything a batch could have changed,
            # also when a redelivery finds it already counted, so a lost publish is repaired.
            self.touched: dict[str, tuple[str, int, int | None, Any]] = {}

        def message(self, key: str, source: Any) -> eng.MessageState:
            held = self.messages.get(key)
            return held[0] if held else eng.decode_message(output.read(engagement, key, source))

        def add(self, event: AnyEvent, source: Any) -> None:
            partition, offset = source.message.partition, source.message.offset
            campaign = event.campaign_id
            key = f"m|{partition}|{event.message_id}"
            before = self.message(key, source)
            after, delta = eng.apply_event(before, event)
            if after is not before:
                self.messages[key] = (after, source)
            totals: eng.Counts = {}
            for hour_delta in delta.values():
                totals = eng.add_counts(totals, hour_delta)
            hours = {eng.epoch_hour(event.occurred_at), *after.first.values(), *delta}
            self._count(f"t|{partition}|{campaign}", (campaign, partition, None), totals, offset, source)
            for hour in hours:
                key = f"h|{partition}|{campaign}|{hour}"
                self._count(key, (campaign, partition, hour), delta.get(hour, {}), offset, source)

        def _count(self, key: str, what: tuple[str, int, int | None], delta: eng.Counts, offset: int, src: Any) -> None:
            if delta:  # an untouched count is read once, when write() publishes it
                held = self.counts.get(key)
                if held is not None:
                    held[0].add(delta, offset)
                else:
                    tally = eng.Tally(eng.decode_accumulator(output.read(engagement, key, src)))
                    if tally.add(delta, offset):
                        self.counts[key] = (tally, src)
            self.touched[key] = (*what, src)

        def write(self) -> list[CampaignPartial]:
            counted: dict[str, eng.Accumulator] = {}
            for key, (tally, source) in self.counts.items():
                counted[key] = tally.freeze()
                output.write(engagement, key, eng.encode_state(counted[key]), source)
            for key, (state, source) in self.messages.items():
                output.write(engagement, key, eng.encode_state(state), source)
            partials = []
            for key, (campaign, partition, hour, source) in self.touched.items():
                acc = counted.get(key)
                if acc is None:  # not changed by this batch: published as stored
                    acc = eng.decode_accumulator(output.read(engagement, key, source))
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

    def publish_partials(partials: list[CampaignPartial]) -> None:
        for partial in partials:
            hour = "t" if partial.hour is None else str(eng.epoch_hour(partial.hour))
            output.produce(
                names.campaign_partials,
                key=f"{partial.campaign_id}|{partial.source_partition}|{hour}".encode(),
                value=encode(partial),
                # The campaign's partition: one worker rolls up all of a campaign's partials.
                partition=partition_for(partial.campaign_id.encode(), settings.topic_partitions),
            )

    def apply_events(sources: Sequence[Any]) -> None:
        decoded = []
        changes = []
        # Suppression first, for the whole batch: the sender reads this table directly, so an
        # unsubscribe stops mail as soon as this pass reaches it, before the slower engagement pass.
        for source in sources:
            try:
                event = decode_event(source.value)
            except DecodeError as exc:
                metrics.poison.labels("events").inc()
                log.warning("skipping undecodable event at offset %s: %s", source.message.offset, exc)
                continue
            change = track_suppression(event, source)
            if change is not None:
                changes.append(change)
            decoded.append((event, source))
            crossed = blocks.observe(event)
            if crossed is not None:
                raise_block_alert(crossed)
        batch = EngagementBatch()
        for event, source in decoded:
            if event.message_id and event.campaign_id:
                batch.add(event, source)
        for change in changes:
            output.produce(names.suppression, key=change.recipient.encode(), value=encode(change))
        publish_partials(batch.write())
        metrics.events.inc(len(sources))

    def in_order(topic: str, table: Any, mark_prefix: str, apply: Apply) -> tuple[Handler, ResumeFrom]:
        """A feed handler applying ``topic``'s batches to ``table``, and where each partition resumes.

        The table marks, per source partition, the next offset it expects: written once every other
        record of the batch is acknowledged, so a durable mark stands only for what is durable,
        and a worker taking the partition reads on from there (no committed offset can promise that).
        """

        def resume_from(partition: int) -> int | None:
            probe = FeedRecord(FeedMessage(topic, partition, -1), b"")
            held = output.read(table, f"{mark_prefix}{partition}", probe)
            return int(held) if held else None

        async def handle(feed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
            since = output.begin()
            apply(records)
            # Every record of the batch (each table's changelog, the audit and output topics) is
            # acknowledged before its mark is written: a mark durable beside a refused record would
            # let a restarted worker resume past what that record stood for (an unsubscribe, say).
            await output.flush(since)
            since = output.begin()
            last = {record.message.partition: record for record in records}
            for partition, record in last.items():
                output.write(table, f"{mark_prefix}{partition}", str(record.message.offset + 1), record)
            await output.flush(since)  # the marks acknowledged before the next batch
            return {partition: record.message.offset + 1 for partition, record in last.items()}

        return handle, resume_from

    def raise_alert(campaign: str, level: str, counts: eng.Counts) -> None:
        delivered = counts.get("delivered", 0)
        rate = counts.get("complaints", 0) / delivered if delivered else 0.0
        threshold = alert_policy.critical_rate if level == "critical" else alert_policy.warning_rate
        log.warning(
            "complaint rate alert: campaign %s at %.4f%% is above the %s line of %.2f%% (%d complaints / %d delivered)",
            campaign, rate * 100, level, threshold * 100, counts.get("complaints", 0), delivered,
        )  # fmt: skip
        metrics.alerts.labels(level).inc()
        alert = ComplaintAlert(
            alert_id=f"{campaign}:{level}:{counts.get('complaints', 0)}",
            campaign_id=campaign,
            level=level,
            complaint_rate=round(rate, 6),
            complaints=counts.get("complaints", 0),
            delivered=delivered,
            threshold=threshold,
            raised_at=utcnow(),
        )
        output.produce(names.alerts, key=campaign.encode(), value=encode(alert))

    def raise_block_alert(crossed: BlockRate) -> None:
        log.warning(
            "block rate alert: campaign %s at %s: %d of %d sends blocked (%.1f%%, line %.1f%%); top diagnostic: %s",
            crossed.campaign_id, crossed.domain, crossed.blocked, crossed.attempts, crossed.rate * 100,
            settings.block_alert_rate * 100, crossed.top_diagnostic,
        )  # fmt: skip
        metrics.block_alerts.inc()
        alert = BlockAlert(
            alert_id=f"{crossed.campaign_id}:block:{crossed.domain}:{crossed.attempts}",
            campaign_id=crossed.campaign_id,
            domain=crossed.domain,
            block_rate=crossed.rate,
            blocked=crossed.blocked,
            attempts=crossed.attempts,
            threshold=settings.block_alert_rate,
            window_seconds=settings.block_alert_window_seconds,
            top_diagnostic=crossed.top_diagnostic,
            raised_at=utcnow(),
        )
        output.produce(names.alerts, key=crossed.campaign_id.encode(), value=encode(alert))

    def apply_partials(sources: Sequence[Any]) -> None:
        rollups: dict[str, tuple[eng.Rollup, Any]] = {}
        campaigns: set[str] = set()

        def held(key: str, source: Any) -> eng.Rollup:
            pending = rollups.get(key)
            return pending[0] if pending else eng.decode_rollup(output.read(campaign_totals, key, source))

        for source in sources:
            try:
                partial = decode_campaign_partial(source.value)
            except DecodeError as exc:
                metrics.poison.labels("campaign-partials").inc()
                log.warning("skipping undecodable campaign partial: %s", exc)
                continue
            campaign = partial.campaign_id
            acc = eng.Accumulator(offset=partial.offset, counts=partial.counts)
            if partial.hour is None:
                campaigns.add(campaign)
                rollups[campaign] = (
                    eng.merge_partial(held(campaign, source), partial.source_partition, acc),
                    source,
                )
                continue
            hour = eng.epoch_hour(partial.hour)
            key = eng.hour_key(campaign, hour)
            rollups[key] = (eng.merge_partial(held(key, source), partial.source_partition, acc), source)
            rollups[campaign] = (eng.with_hour(held(campaign, source), hour), source)
        for campaign in campaigns:
            rollup, source = rollups[campaign]
            counts = eng.total(rollup.partials.values())
            level = eng.alert_level(counts, alert_policy)
            if level != rollup.alert_level:
                if eng.is_escalation(rollup.alert_level, level):
                    raise_alert(campaign, level, counts)
                rollups[campaign] = (msgspec.structs.replace(rollup, alert_level=level), source)
        for key, (rollup, source) in rollups.items():
            output.write(campaign_totals, key, eng.encode_state(rollup), source)

    def gate(request: SendRequest, source: Any) -> list[str]:
        """Why this request must not be mailed now; empty when it may."""
        entry = decode_entry(output.read(suppression, request.recipient, source))
        return suppression_reasons(entry, request.list_id)

    # Message ids of the batches in hand, from their gate until their outcome is recorded: a request met
    # again meanwhile (in the same batch or the next) is a duplicate, whatever the sent-log says yet.
    sending: set[str] = set()

    async def handle_sends(batch: list[tuple[SendRequest, Any]], release: Callable[[], None]) -> None:
        """Gate every request, send the rest concurrently through the delivery process, recording each
        outcome as it comes; ``release()`` once only the answers are left to wait for, so the next batch
        is gated while this one's last messages are sent (the delivery process never runs dry between).

        Order per batch: pending marks in the sent-log (acknowledged) -> SMTP, each answer's sent mark and
        events produced at once -> all of them acknowledged -> offsets commit. A crash anywhere loses no
        request. What it can mail twice is what was in the delivery process and what was answered in the
        last milliseconds (sent marks Kafka had not yet acknowledged); the redelivery counts them.
        """
        outgoing: list[tuple[SendRequest, Any]] = []
        try:
            await gate_batch(batch, outgoing)
            release()
            await send_gated(outgoing)
        finally:
            sending.difference_update(request.message_id for request, _ in outgoing)

    def publish(event: AnyEvent) -> None:
        output.produce(names.events, key=recipient_key(event.recipient, event.campaign_id), value=encode(event))

    def retry(request: SendRequest) -> None:
        output.produce(names.retry, key=request.recipient.encode(), value=encode(request))

    async def gate_batch(batch: list[tuple[SendRequest, Any]], outgoing: list[tuple[SendRequest, Any]]) -> None:
        """The requests of ``batch`` that may be mailed, into ``outgoing``, their pending marks acknowledged."""
        since = output.begin()
        now = utcnow()
        for index, (request, source) in enumerate(batch):
            if index % GATE_YIELD_EVERY == GATE_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # the batch before this one is still handing messages over
            state = sent_log_state(output.read(sent_log, request.message_id, source))
            if state == "sent" or request.message_id in sending:
                metrics.sends.labels("duplicate").inc()
                continue
            reasons = gate(request, source)
            if reasons:
                metrics.sends.labels("skipped").inc()
                publish(skipped(request, reasons, now))
                continue
            wait = limiter.reserve(recipient_domain(request.recipient), time.monotonic(), MAX_RATE_WAIT_SECONDS)
            if wait > MAX_RATE_WAIT_SECONDS:
                # Too far out to hold the batch for: the retry topic brings it back when its slot comes.
                metrics.sends.labels("rate_limited").inc()
                retry(msgspec.structs.replace(request, not_before=now + timedelta(seconds=wait)))
                continue
            if state == SENT_LOG_PENDING:
                metrics.sends.labels("possible_duplicate").inc()
                log.warning("message %s may have been mailed before a crash; sending it again", request.message_id)
            sending.add(request.message_id)
            outgoing.append((request, source))
            output.write(sent_log, request.message_id, SENT_LOG_PENDING, source)
        await output.flush(since)

    async def send_gated(outgoing: list[tuple[SendRequest, Any]]) -> None:
        """Mail ``outgoing`` through the delivery process; every outcome acknowledged by Kafka on return."""
        since = output.begin()

        def record(request: SendRequest, source: Any, delivered: Delivered) -> None:
            outcome, answered_at = delivered.outcome, delivered.at
            if isinstance(outcome, list):
                metrics.sends.labels("skipped").inc()
                publish(skipped(request, outcome, answered_at))
                output.write(sent_log, request.message_id, "", source)
                return
            decision = decide(request, outcome, answered_at, retry_policy)
            if decision.possible_duplicate:
                metrics.sends.labels("possible_duplicate").inc()
                log.warning(
                    "message %s: connection lost after its content was sent; it may arrive twice", request.message_id
                )
            if decision.delivered:
                output.write(sent_log, request.message_id, sent_log_value(answered_at), source)
                metrics.sends.labels("sent").inc()
            else:
                # Not mailed: a retry of it is no duplicate.
                output.write(sent_log, request.message_id, "", source)
                metrics.sends.labels("deferred" if decision.retry is not None else "not_sent").inc()
            for event in decision.events:
                publish(event)
            if decision.retry is not None:
                retry(decision.retry)

        async def deliver(request: SendRequest, source: Any) -> None:
            wait = pacer.reserve(recipient_domain(request.recipient), time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)  # the domain's rate limit
            # Checked again right before the hand-off: an unsubscribe that arrived while the batch
            # waited still stops this message.
            record(request, source, await courier.deliver(request, lambda: gate(request, source)))

        # One failure cancels the rest; the batch is read again from its offsets.
        async with asyncio.TaskGroup() as group:
            for request, source in outgoing:
                group.create_task(deliver(request, source))
        # Acknowledged before the batch's offsets can commit (at-least-once, nothing lost).
        await output.flush(since)

    async def send_batch(feed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
        batch = []
        for record in records:
            try:
                batch.append((decode_send_request(record.value), record))
            except DecodeError as exc:
                metrics.poison.labels("outbox").inc()
                log.warning("skipping undecodable send request: %s", exc)
        await handle_sends(batch, feed.release)
        return {r.message.partition: r.message.offset + 1 for r in records}

    async def release_retries(feed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
        """Back to the outbox once due; a partition whose next retry is not due rests until it is."""
        done: dict[int, int] = {}
        resting: set[int] = set()
        now = utcnow()
        for record in records:
            partition, offset = record.message.partition, record.message.offset
            if partition in resting:
                continue
            try:
                request = decode_send_request(record.value)
            except DecodeError as exc:
                metrics.poison.labels("retry").inc()
                log.warning("skipping undecodable retry: %s", exc)
                done[partition] = offset + 1
                continue
            if request.not_before is not None and request.not_before > now:
                feed.rest(partition, offset, (request.not_before - now).total_seconds())
                resting.add(partition)
                continue
            output.produce(names.outbox, key=request.recipient.encode(), value=encode(request))
            done[partition] = offset + 1
        await output.flush()
        return done

    # Beside faust's consumer, each with its own: a backlog of sends or retries never delays an event.
    track_events, events_resume_from = in_order(names.events, engagement, "o|", apply_events)
    # No campaign id starts with a control character (rollups are keyed by the bare id).
    roll_up, partials_resume_from = in_order(names.campaign_partials, campaign_totals, "\x1eoffset|", apply_partials)
    feeds: list[tuple[str, str, int, Handler, ResumeFrom | None]] = [
        ("events", names.events, settings.event_batch_size, track_events, events_resume_from),
        ("rollup", names.campaign_partials, settings.event_batch_size, roll_up, partials_resume_from),
        ("sender", names.outbox, settings.send_batch_size, send_batch, None),
        ("retries", names.retry, 500, release_retries, None),
    ]
    for name, topic, batch_size, handler, resume_from in feeds:
        # Two sender batches in hand: the next one is gated while this one's last messages go out.
        PartitionFeed(
            app,
            name=name,
            topic=topic,
            follows=names.engagement_changelog,
            bootstrap_servers=settings.bootstrap_servers,
            batch_size=batch_size,
            handle=handler,
            resume_from=resume_from,
            depth=2 if name == "sender" else 1,
        ).connect()

    register_views(
        app, settings, suppression=suppression, campaign_totals=campaign_totals, metrics=metrics, current=output.current
    )
    return app
