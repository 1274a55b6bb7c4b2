"""The outbox feed's job: gate each send request, hand the rest to the delivery process, record outcomes.

Order per batch (docs/guarantees.md):

1. **gate**: each request is checked against the sent-log (sent already: a duplicate, skipped) and the
   suppression table (suppressed: ``send.skipped``), and booked with its domain's rate limit (a slot
   more than :data:`MAX_RATE_WAIT_SECONDS` out: through the retry topic instead). The rest get a
   ``pending`` mark in the sent-log, acknowledged by Kafka before anything is sent;
2. the feed may read and gate the next batch meanwhile (``release``): two batches in hand;
3. **hand-off**: each message waits for its domain's pace and for its partition's events to be caught up
   (:mod:`processors.caught_up`), is checked against suppression once more (an unsubscribe applied while
   its batch waited still stops it) and goes to the delivery process;
4. **outcomes**: each answer's sent mark, events and retry are produced as the answer comes, and all of
   them are acknowledged before the batch's offsets commit.

A crash anywhere loses no request. What it can mail twice is what was in the delivery process and what
was answered in the last milliseconds (sent marks Kafka had not yet acknowledged): the redelivery finds
them ``pending``, sends them again and counts each as a possible duplicate.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from processors.campaign_book import CAMPAIGN_PAUSED
from processors.caught_up import EVENTS_BEHIND, Rebalancing
from processors.delivery import (
    WITHDRAWN_REASON,
    DeliveryResult,
    RetryPolicy,
    SentState,
    decide,
    sent_event,
    sent_log_state,
    sent_log_value,
    skipped,
)
from processors.feed import FeedControl, FeedRecord
from processors.held import CampaignGate
from processors.metrics import WorkerMetrics
from processors.output import Output
from processors.ratelimit import DomainLimits, RateLimiter, recipient_domain
from processors.state_keys import Address, MessageId, address, message
from processors.store import PartitionStore
from processors.suppression import decode_entry, suppression_reasons
from processors.transaction import Transaction
from schemas.codec import DecodeError, decode_send_request, encode
from schemas.events import POSSIBLY_MAILED, AnyEvent, SendRequest, Sent, utcnow
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)

# A send whose domain slot is further out than this goes through the retry topic instead of holding its batch.
MAX_RATE_WAIT_SECONDS = 1.0
# Gating a batch gives the loop back this often, for the hand-offs of the batch before it still sending.
GATE_YIELD_EVERY = 128


class EventsGate(Protocol):
    """Whether a partition's acknowledged events are applied (:class:`processors.caught_up.CaughtUp`)."""

    def fresh(self, partition: int) -> bool: ...

    def begin_by(self, partition: int) -> float: ...

    async def wait(self, partition: int) -> None: ...


class Handoff(Protocol):
    """The delivery process as the sender sees it (:class:`processors.courier.Courier`)."""

    async def deliver(
        self,
        request: SendRequest,
        still_barred: Callable[[], list[str]],
        partition: int = -1,
        begin_by: Callable[[], float] | None = None,
        again: bool = False,
    ) -> DeliveryResult: ...


def domain_limits(settings: Settings) -> DomainLimits:
    rates = dict(settings.domain_rate_limits)
    default = rates.pop("*", None)
    return DomainLimits(rates, default=default)


class Sender:
    def __init__(
        self,
        output: Output,
        suppression: PartitionStore[Address],
        sent_log: PartitionStore[MessageId],
        courier: Handoff,
        campaigns: CampaignGate,
        events: EventsGate,
        settings: Settings,
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._output, self._suppression, self._sent_log = output, suppression, sent_log
        self._campaigns, self._events = campaigns, events
        self._courier, self._metrics, self._clock = courier, metrics, clock
        self._topics = Topics.for_prefix(settings.topic_prefix)
        self._retry_policy = RetryPolicy(
            max_attempts=settings.max_send_attempts, base_seconds=settings.retry_base_seconds
        )
        limits = domain_limits(settings)
        # Booked when a batch is gated: a send whose slot is too far out goes through the retry topic.
        self._limiter = RateLimiter(limits, burst=settings.domain_burst)
        # Booked again at the hand-off, on the clock the mail really goes by: a batch's sends start only once
        # its pending marks are acknowledged, some milliseconds after the gate, and batches overlap, so slots
        # counted from the gate let a late burst and the slot after it go out together.
        self._pacer = RateLimiter(limits, burst=settings.domain_burst)
        # Message ids of the batches in hand, from their gate until their outcome is recorded: a request met
        # again meanwhile (in the same batch or the next) is a duplicate, whatever the sent-log says yet.
        # Each says whether it was found ``pending``: mailed perhaps before a crash, so not skipped as never mailed.
        self._sending: dict[str, bool] = {}

    async def handle(self, feed: FeedControl, records: list[FeedRecord]) -> dict[int, int]:
        """One batch of the outbox; ``feed.release()`` once only the answers are left to wait for, so the
        next batch is gated while this one's last messages are sent (the delivery process never runs dry)."""
        batch = []
        for record in records:
            try:
                batch.append((decode_send_request(record.value), record.message.partition))
            except DecodeError as exc:
                self._metrics.poison.labels("outbox").inc()
                log.warning("skipping undecodable send request: %s", exc)
        outgoing: list[tuple[SendRequest, int]] = []
        await self._campaigns.ready()  # never mail before every campaign's state is known
        try:
            await self._gate(batch, outgoing)
            feed.release()
            await self._send(outgoing)
        finally:
            for request, _ in outgoing:
                self._sending.pop(request.message_id, None)
        return {r.message.partition: r.message.offset + 1 for r in records}

    def barred(self, tx: Transaction, request: SendRequest, partition: int) -> list[str]:
        """Why ``request`` must not be mailed now (its campaign's state, else its recipient's); empty when it may."""
        held = self._campaigns.reasons(request.campaign_id)
        if held:
            return held
        entry = decode_entry(tx.read(self._suppression, address(request.recipient), partition))
        return suppression_reasons(entry, request.list_id)

    def _handoff_barred(self, tx: Transaction, request: SendRequest, partition: int) -> list[str]:
        if not self._events.fresh(partition):
            return [EVENTS_BEHIND]
        return self.barred(tx, request, partition)

    async def _gate(self, batch: list[tuple[SendRequest, int]], outgoing: list[tuple[SendRequest, int]]) -> None:
        """The requests of ``batch`` that may be mailed, into ``outgoing``, their pending marks acknowledged."""
        tx = self._output.transaction()
        now = utcnow()
        for index, (request, partition) in enumerate(batch):
            if index % GATE_YIELD_EVERY == GATE_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # the batch before this one is still handing messages over
            key = message(request.message_id)
            entry = tx.read(self._sent_log, key, partition)
            state = sent_log_state(entry)
            if request.message_id in self._sending:  # the batch in hand records its outcome
                self._metrics.sends.labels("duplicate").inc()
                continue
            if state is SentState.SENT:
                self._metrics.sends.labels("duplicate").inc()
                sent = sent_event(entry)
                if sent is not None:  # its event may not have reached Kafka before a crash
                    self._publish(tx, sent)
                continue
            reasons = self.barred(tx, request, partition)
            if reasons == [CAMPAIGN_PAUSED]:
                self._hold(tx, request)
                continue
            if reasons:
                self._skip(tx, request, reasons, now, found_pending=state is SentState.PENDING)
                continue
            wait = self._limiter.reserve(recipient_domain(request.recipient), self._clock(), MAX_RATE_WAIT_SECONDS)
            if wait > MAX_RATE_WAIT_SECONDS:
                # Too far out to hold the batch for: the retry topic brings it back when its slot comes.
                self._metrics.sends.labels("rate_limited").inc()
                self._retry(tx, msgspec.structs.replace(request, not_before=now + timedelta(seconds=wait)))
                continue
            if state is SentState.PENDING:
                self._metrics.sends.labels("possible_duplicate").inc()
                log.warning("message %s may have been mailed before a crash; sending it again", request.message_id)
            self._sending[request.message_id] = state is SentState.PENDING
            outgoing.append((request, partition))
            tx.write(self._sent_log, key, sent_log_value(SentState.PENDING), partition)
        await tx.commit()

    async def _send(self, outgoing: list[tuple[SendRequest, int]]) -> None:
        """Mail ``outgoing`` through the delivery process; every outcome acknowledged by Kafka on return."""
        tx = self._output.transaction()

        async def deliver(request: SendRequest, partition: int) -> None:
            wait = self._pacer.reserve(recipient_domain(request.recipient), self._clock())
            if wait > 0:
                await asyncio.sleep(wait)  # the domain's rate limit
            again = False
            while True:
                try:
                    await self._events.wait(partition)
                except Rebalancing:
                    self._requeue(tx, request, partition)
                    return
                # Checked again right before the hand-off: an unsubscribe that arrived while the batch
                # waited still stops this message. The delivery process may have had no room until the
                # partition fell behind again, or give it back (its recipient suppressed, its partition
                # behind, or it waited there past ``begin_by``): then it is checked once more, and goes
                # before the messages that have not waited.
                barred = functools.partial(self._handoff_barred, tx, request, partition)
                begin_by = functools.partial(self._events.begin_by, partition)
                result = await self._courier.deliver(request, barred, partition, begin_by, again)
                if result.outcome != [EVENTS_BEHIND]:
                    break
                self._metrics.handoff_waits.inc()
                again = True
            self._record(tx, request, partition, result)

        # One failure cancels the rest; the batch is read again from its offsets.
        async with asyncio.TaskGroup() as group:
            for request, partition in outgoing:
                group.create_task(deliver(request, partition))
        # Acknowledged before the batch's offsets can commit (at-least-once, nothing lost).
        await tx.commit()

    def _record(self, tx: Transaction, request: SendRequest, partition: int, result: DeliveryResult) -> None:
        key = message(request.message_id)
        outcome, answered_at = result.outcome, result.at
        if isinstance(outcome, list):
            tx.write(self._sent_log, key, sent_log_value(SentState.NEVER), partition)
            if outcome in ([CAMPAIGN_PAUSED], [WITHDRAWN_REASON]):  # paused before it went out: it waits
                self._hold(tx, request)
                return
            self._skip(tx, request, outcome, answered_at, found_pending=self._sending.get(request.message_id, False))
            return
        decision = decide(request, outcome, answered_at, self._retry_policy)
        if decision.possible_duplicate:
            self._metrics.sends.labels("possible_duplicate").inc()
            log.warning(
                "message %s: connection lost after its content was sent; it may arrive twice", request.message_id
            )
        if decision.delivered:
            sent = next(e for e in decision.events if isinstance(e, Sent))
            tx.write(self._sent_log, key, sent_log_value(SentState.SENT, sent), partition)
            self._metrics.sends.labels("sent").inc()
        else:
            # Not mailed: a retry of it is no duplicate.
            tx.write(self._sent_log, key, sent_log_value(SentState.NEVER), partition)
            self._metrics.sends.labels("deferred" if decision.retry is not None else "not_sent").inc()
        for event in decision.events:
            self._publish(tx, event)
        if decision.retry is not None:
            self._retry(tx, decision.retry)

    def _skip(
        self, tx: Transaction, request: SendRequest, reasons: list[str], at: datetime, *, found_pending: bool
    ) -> None:
        """Not mailed now. A request found ``pending`` may have been mailed before a crash (its sent mark lost
        with the worker): its ``send.skipped`` says so, and reports and ``make chaos`` tell it from one never
        mailed."""
        if found_pending:
            log.warning("message %s: barred (%s), and may have been mailed before a crash", request.message_id, reasons)
            reasons = [*reasons, POSSIBLY_MAILED]
        self._metrics.sends.labels("skipped_possibly_mailed" if found_pending else "skipped").inc()
        self._publish(tx, skipped(request, reasons, at))

    def _requeue(self, tx: Transaction, request: SendRequest, partition: int) -> None:
        """Never handed over, and its partition is moving: it goes back through the retry topic to whoever
        gets the partition, as not mailed. Failing the batch instead would leave the messages of it that
        did go out ``pending``, and the next owner would mail them again."""
        self._metrics.sends.labels("requeued").inc()
        tx.write(self._sent_log, message(request.message_id), sent_log_value(SentState.NEVER), partition)
        self._retry(tx, request)

    def _publish(self, tx: Transaction, event: AnyEvent) -> None:
        tx.produce(self._topics.events, key=recipient_key(event.recipient, event.campaign_id), value=encode(event))

    def _hold(self, tx: Transaction, request: SendRequest) -> None:
        """Its campaign is paused: the request waits on the held topic until it is resumed or cancelled."""
        self._metrics.sends.labels("held").inc()
        held = msgspec.structs.replace(request, held_at=utcnow())
        tx.produce(self._topics.held, key=request.recipient.encode(), value=encode(held))

    def _retry(self, tx: Transaction, request: SendRequest) -> None:
        tx.produce(self._topics.retry, key=request.recipient.encode(), value=encode(request))
