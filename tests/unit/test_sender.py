"""The sender job over memory stores and a scripted relay: what it gates, hands off, records and retries, and
what a crash can make it send twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from processors.caught_up import EVENTS_BEHIND
from processors.delivery import DeliveryResult, SentState, SmtpOutcome, outcome_event_id, sent_log_state, sent_log_value
from processors.faust_store import SENT_LOG, changelog_topic
from processors.feed import FeedMessage, FeedRecord
from processors.sender import Sender
from processors.state_keys import address, message
from processors.suppression import Reason, SuppressionEntry, encode_entry
from schemas.bounce_reasons import SmtpStage
from schemas.codec import decode_event, decode_send_request, encode
from schemas.events import POSSIBLY_MAILED, SendRequest, SendSkipped, message_id_for
from schemas.settings import Settings
from tests.support.worker_harness import BookGate, EventsApplied, FeedCalls, Harness

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)


class Relay:
    """The delivery process as the sender sees it, answering each recipient as scripted (250 otherwise)."""

    def __init__(
        self,
        answers: dict[str, SmtpOutcome] | None = None,
        on_handoff: Callable[[], None] | None = None,
        give_back_once: set[str] | None = None,
    ):
        """``give_back_once``: recipients whose first hand-off comes back unsent (their check too old)."""
        self.answers = answers or {}
        self.give_back_once = give_back_once or set()
        self.mailed: list[str] = []
        self.barred: list[str] = []
        self.begin_by: dict[str, float] = {}
        self.handed: list[tuple[str, bool]] = []  # (recipient, handed over again)
        self._on_handoff = on_handoff or (lambda: None)

    async def deliver(
        self,
        request: SendRequest,
        still_barred: Callable[[], list[str]],
        partition: int = -1,
        begin_by: Callable[[], float] | None = None,
        again: bool = False,
    ) -> DeliveryResult:
        self._on_handoff()
        reasons = still_barred()
        self.handed.append((request.recipient, again))
        if begin_by is not None:
            self.begin_by[request.recipient] = begin_by()
        if request.recipient in self.give_back_once:
            self.give_back_once.discard(request.recipient)
            return DeliveryResult([EVENTS_BEHIND], AT)
        if reasons:
            self.barred.append(request.recipient)
            return DeliveryResult(reasons, AT)
        await asyncio.sleep(0)
        self.mailed.append(request.recipient)
        return DeliveryResult(self.answers.get(request.recipient, SmtpOutcome(250, "2.0.0 Ok", SmtpStage.DATA)), AT)


def request(recipient: str, campaign: str = "c", attempt: int = 1) -> SendRequest:
    return SendRequest(
        message_id=message_id_for(campaign, recipient),
        campaign_id=campaign,
        recipient=recipient,
        list_id="news",
        from_address="News <news@example.com>",
        subject="s",
        html="<p>h</p>",
        text="h",
        attempt=attempt,
        enqueued_at=AT,
    )


def records(requests: list[SendRequest], partition: int = 0, first: int = 0) -> list[FeedRecord]:
    topic = "mailpulse.outbox"
    return [FeedRecord(FeedMessage(topic, partition, first + i), encode(r)) for i, r in enumerate(requests)]


def sender(
    harness: Harness,
    relay: Relay,
    settings: Settings | None = None,
    gate: BookGate | None = None,
    events: EventsApplied | None = None,
) -> Sender:
    t = harness.tables
    campaigns = gate or BookGate()
    return Sender(
        harness.output,
        t.suppression,
        t.sent_log,
        relay,
        campaigns,
        events or EventsApplied(),
        settings or harness.settings,
        harness.metrics,
    )


def kinds(harness: Harness) -> list[tuple[str, str | None]]:
    return [(e.kind, e.recipient) for e in map(decode_event, harness.producer.values(harness.names.events))]


def test_a_batch_is_gated_mailed_and_recorded() -> None:
    harness = Harness()
    suppression = harness.tables.suppression
    gone = SuppressionEntry(reasons=(Reason.UNSUBSCRIBED,))
    suppression.set(address("Gone@Example.org"), encode_entry(gone).decode(), 0)
    unknown = SmtpOutcome(550, "5.1.1 <nobody@example.org>: Recipient address rejected: User unknown", SmtpStage.RCPT)
    busy = SmtpOutcome(451, "4.7.1 Try again later", SmtpStage.RCPT)
    relay = Relay({"nobody@example.org": unknown, "busy@example.org": busy})
    batch = [request(r) for r in ("a@example.org", "gone@example.org", "nobody@example.org", "busy@example.org")]
    feed = FeedCalls()
    offsets = asyncio.run(sender(harness, relay).handle(feed, records(batch)))
    assert offsets == {0: 4} and feed.released == 1
    assert relay.mailed == ["a@example.org", "nobody@example.org", "busy@example.org"]
    assert sorted(kinds(harness)) == sorted(
        [
            ("send.skipped", "gone@example.org"),
            ("sent", "a@example.org"),
            ("failed", "nobody@example.org"),
            ("bounce", "nobody@example.org"),
            ("deferred", "busy@example.org"),
        ]
    )
    retried = [decode_send_request(v) for v in harness.producer.values(harness.names.retry)]
    assert [(r.recipient, r.attempt) for r in retried] == [("busy@example.org", 2)]
    states = {r.recipient: sent_log_state(harness.tables.sent_log.get(message(r.message_id), 0)) for r in batch}
    assert states == {
        "a@example.org": SentState.SENT,
        "gone@example.org": SentState.NEVER,
        "nobody@example.org": SentState.NEVER,  # refused: a later send of it is no duplicate
        "busy@example.org": SentState.NEVER,
    }
    outcomes = ("sent", "skipped", "not_sent", "deferred")
    counted = {o: harness.metrics.value("mailpulse_worker_sends_total", outcome=o) for o in outcomes}
    assert counted == {"sent": 1, "skipped": 1, "not_sent": 1, "deferred": 1}
    harness.output.close()


def test_an_unsubscribe_applied_while_its_batch_waits_stops_the_message_at_the_hand_off() -> None:
    harness = Harness()
    suppression = harness.tables.suppression

    def unsubscribe_b() -> None:  # the events feed applies an unsubscribe while the sender's batch is gated
        entry = encode_entry(SuppressionEntry(reasons=(Reason.UNSUBSCRIBED,))).decode()
        harness.output.write(suppression, address("b@example.org"), entry, 0)

    relay = Relay(on_handoff=unsubscribe_b)
    asyncio.run(
        sender(harness, relay).handle(FeedCalls(), records([request("a@example.org"), request("b@example.org")]))
    )
    assert relay.mailed == ["a@example.org"] and relay.barred == ["b@example.org"]
    assert ("send.skipped", "b@example.org") in kinds(harness)
    harness.output.close()


def test_a_partition_whose_events_are_behind_hands_nothing_off_until_they_are_applied() -> None:
    """A worker that took partition 1 over reads its events' tail: the unsubscribe in it stops the mail."""
    harness = Harness()
    events = EventsApplied(behind={1})
    relay = Relay()

    async def run() -> None:
        batch = records([request("a@example.org")]) + records([request("b@example.org")], partition=1)
        handling = asyncio.create_task(sender(harness, relay, events=events).handle(FeedCalls(), batch))
        for _ in range(200):
            if relay.mailed:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert relay.mailed == ["a@example.org"] and events.waits == 1  # partition 0 is not held up
        entry = encode_entry(SuppressionEntry(reasons=(Reason.UNSUBSCRIBED,))).decode()
        harness.output.write(harness.tables.suppression, address("b@example.org"), entry, 1)
        events.catch_up()
        await handling

    asyncio.run(run())
    assert relay.mailed == ["a@example.org"] and relay.barred == ["b@example.org"]
    assert ("send.skipped", "b@example.org") in kinds(harness)
    harness.output.close()


def test_each_hand_off_carries_its_partitions_deadline_and_one_given_back_for_it_is_handed_over_again() -> None:
    """The delivery process gives back a message that waited past the moment its check was good for; the
    sender checks it again and hands it over anew, once."""
    harness = Harness()

    relay = Relay(give_back_once={"c@example.org"})
    batch = records([request("a@example.org")]) + records([request("c@example.org")], partition=2)
    asyncio.run(sender(harness, relay).handle(FeedCalls(), batch))
    assert relay.begin_by == {"a@example.org": 1000.0, "c@example.org": 1002.0}  # EventsApplied: 1000 + partition
    assert relay.mailed == ["a@example.org", "c@example.org"]
    # Given back, it is handed over again ahead of the messages that never waited.
    assert relay.handed == [("a@example.org", False), ("c@example.org", False), ("c@example.org", True)]
    assert harness.metrics.value("mailpulse_worker_handoff_waits_total") == 1
    assert sorted(kinds(harness)) == [("sent", "a@example.org"), ("sent", "c@example.org")]
    harness.output.close()


def test_a_hand_off_waiting_when_its_partition_moves_is_requeued_as_not_mailed() -> None:
    """The rebalance waits for the batch; the waiting message goes back through the retry topic, the rest
    of the batch is mailed and recorded (failing the whole batch would leave those pending, mailed twice)."""
    harness = Harness()
    events = EventsApplied(behind={1})
    relay = Relay()

    async def run() -> dict[int, int]:
        batch = records([request("a@example.org")]) + records([request("b@example.org")], partition=1)
        handling = asyncio.create_task(sender(harness, relay, events=events).handle(FeedCalls(), batch))
        while not relay.mailed:
            await asyncio.sleep(0.01)
        events.rebalance()
        return await asyncio.wait_for(handling, 5)

    assert asyncio.run(run()) == {0: 1, 1: 1}
    assert relay.mailed == ["a@example.org"] and kinds(harness) == [("sent", "a@example.org")]
    retried = [decode_send_request(v) for v in harness.producer.values(harness.names.retry)]
    assert [(r.recipient, r.attempt) for r in retried] == [("b@example.org", 1)]
    b = message(request("b@example.org").message_id)
    assert sent_log_state(harness.tables.sent_log.get(b, 1)) is SentState.NEVER
    assert harness.metrics.value("mailpulse_worker_sends_total", outcome="requeued") == 1
    harness.output.close()


def test_requests_met_again_are_duplicates_and_a_pending_one_is_sent_again_and_counted() -> None:
    worker = Harness()
    relay = Relay()
    batch = [request(f"r{i}@example.org") for i in range(6)]
    asyncio.run(sender(worker, relay).handle(FeedCalls(), records(batch)))
    assert len(relay.mailed) == 6
    # The same batch again (its offsets were not committed): all of it is sent already.
    again = Relay()
    asyncio.run(sender(worker, again).handle(FeedCalls(), records(batch)))
    assert again.mailed == []
    assert worker.metrics.value("mailpulse_worker_sends_total", outcome="duplicate") == 6
    # A request marked pending whose answer never got recorded (a crash mid-send): mailed again, counted.
    pending = request("late@example.org")
    worker.output.write(worker.tables.sent_log, message(pending.message_id), "pending", 0)
    asyncio.run(sender(worker, again).handle(FeedCalls(), records([pending])))
    assert again.mailed == ["late@example.org"]
    assert worker.metrics.value("mailpulse_worker_sends_total", outcome="possible_duplicate") == 1
    worker.output.close()


def test_a_pending_request_barred_now_is_skipped_as_possibly_mailed_at_the_gate_and_at_the_hand_off() -> None:
    """A worker killed during an SMTP transaction leaves the request ``pending``; its recipient hard-bounced
    or unsubscribed meanwhile. It is not mailed again, and its skip must not claim it was never mailed
    (``make chaos`` saw a report count one mail fewer than the SMTP sink got)."""
    worker = Harness()
    gated, handed = request("gated@example.org"), request("handed@example.org")
    for r in (gated, handed):
        worker.output.write(worker.tables.sent_log, message(r.message_id), sent_log_value(SentState.PENDING), 0)
    gone = encode_entry(SuppressionEntry(reasons=(Reason.HARD_BOUNCE,))).decode()
    worker.output.write(worker.tables.suppression, address("gated@example.org"), gone, 0)

    def unsubscribe_handed() -> None:  # applied after the gate, before the hand-off
        entry = encode_entry(SuppressionEntry(reasons=(Reason.UNSUBSCRIBED,))).decode()
        worker.output.write(worker.tables.suppression, address("handed@example.org"), entry, 0)

    never = request("never@example.org")  # not pending: its skip is a plain one
    worker.output.write(worker.tables.suppression, address("never@example.org"), gone, 0)
    relay = Relay(on_handoff=unsubscribe_handed)
    asyncio.run(sender(worker, relay).handle(FeedCalls(), records([gated, handed, never])))
    assert relay.mailed == []
    reasons = {
        e.recipient: e.reason
        for e in map(decode_event, worker.producer.values(worker.names.events))
        if isinstance(e, SendSkipped)
    }
    assert reasons == {
        "gated@example.org": f"hard_bounce,{POSSIBLY_MAILED}",
        "handed@example.org": f"unsubscribed,{POSSIBLY_MAILED}",
        "never@example.org": "hard_bounce",
    }
    counted = {
        o: worker.metrics.value("mailpulse_worker_sends_total", outcome=o)
        for o in ("skipped", "skipped_possibly_mailed")
    }
    assert counted == {"skipped": 1, "skipped_possibly_mailed": 2}
    worker.output.close()


def test_a_sender_killed_mid_batch_mails_twice_only_what_had_no_acknowledged_sent_mark() -> None:
    worker = Harness()
    batch = [request(f"k{i}@example.org") for i in range(40)]
    mailed: list[str] = []

    class Killed(Exception):
        pass

    class Dying(Relay):
        """Answers 30 messages; the sent marks of the last 5 never reach Kafka, and the worker is killed."""

        async def deliver(
            self,
            request: SendRequest,
            still_barred: Callable[[], list[str]],
            partition: int = -1,
            begin_by: Callable[[], float] | None = None,
            again: bool = False,
        ) -> DeliveryResult:
            if len(mailed) == 25:
                worker.producer.release()  # the first 25 answers' marks acknowledged ...
                worker.producer.hold = True  # ... and from here nothing the worker produces reaches the broker
            if len(mailed) == 30:
                raise Killed  # SIGKILL
            mailed.append(request.recipient)
            return DeliveryResult(SmtpOutcome(250, "ok", SmtpStage.DATA), AT)

    try:
        asyncio.run(sender(worker, Dying()).handle(FeedCalls(), records(batch)))
    except* Killed:
        pass
    worker.producer.lose()
    worker.producer.hold = False
    restarted = worker.restarted()
    relay = Relay()
    asyncio.run(sender(restarted, relay).handle(FeedCalls(), records(batch)))
    twice = set(mailed) & set(relay.mailed)
    assert set(mailed) | set(relay.mailed) == {r.recipient for r in batch}  # nothing lost
    assert len(twice) == 5  # mailed after the last acknowledged sent mark
    assert restarted.metrics.value("mailpulse_worker_sends_total", outcome="possible_duplicate") >= len(twice)
    restarted.output.close()


def test_a_domain_over_its_rate_goes_through_the_retry_topic_instead_of_holding_the_batch() -> None:
    harness = Harness()
    settings = Settings.from_env({"MAILPULSE_DOMAIN_RATE_LIMITS": "slow.example=2", "MAILPULSE_DOMAIN_BURST": "1"})
    relay = Relay()
    now = [1000.0]
    job = Sender(
        harness.output,
        harness.tables.suppression,
        harness.tables.sent_log,
        relay,
        BookGate(),
        EventsApplied(),
        settings,
        harness.metrics,
        clock=lambda: now[0],
    )
    batch = [request(f"s{i}@slow.example") for i in range(5)] + [request("fast@example.org")]
    asyncio.run(job.handle(FeedCalls(), records(batch)))
    # 2 a second with no burst: slots at 0, 0.5 and 1.0 s fit the wait allowed; the rest come back later.
    assert len(relay.mailed) == 4 and "fast@example.org" in relay.mailed
    retried = [decode_send_request(v) for v in harness.producer.values(harness.names.retry)]
    assert len(retried) == 2 and all(r.not_before is not None and r.attempt == 1 for r in retried)
    assert harness.metrics.value("mailpulse_worker_sends_total", outcome="rate_limited") == 2
    harness.output.close()


def test_an_undecodable_request_is_counted_and_skipped() -> None:
    harness = Harness()
    relay = Relay()
    good = records([request("a@example.org")], first=1)
    bad = [FeedRecord(FeedMessage("mailpulse.outbox", 0, 0), b"not json")]
    assert asyncio.run(sender(harness, relay).handle(FeedCalls(), bad + good)) == {0: 2}
    assert relay.mailed == ["a@example.org"]
    assert harness.metrics.value("mailpulse_worker_undecodable_total", topic="outbox") == 1
    harness.output.close()


def test_a_sent_mark_acknowledged_without_its_event_publishes_the_event_on_redelivery() -> None:
    """A worker killed while the events' leader was down: its sent marks reached Kafka, its ``sent`` events
    did not. The redelivery mails nobody again and publishes each kept event, under the id it had."""
    worker = Harness()
    batch = [request(f"m{i}@example.org") for i in range(6)]

    def outage() -> None:  # from the first hand-off on (the pending marks are acknowledged by then)
        worker.producer.hold = True

    relay = Relay(on_handoff=outage)

    async def killed_after_the_marks() -> None:
        sending = asyncio.create_task(sender(worker, relay).handle(FeedCalls(), records(batch)))
        while len(relay.mailed) < len(batch):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # outcomes recorded, waiting for their acknowledgements
        sent_log = changelog_topic(worker.settings, SENT_LOG)
        assert worker.producer.release_topic(sent_log) == len(batch)
        sending.cancel()  # SIGKILL: the events never reach the broker

    asyncio.run(asyncio.wait_for(killed_after_the_marks(), 10))
    assert worker.producer.lose() == len(batch) and kinds(worker) == []
    worker.producer.hold = False
    restarted = worker.restarted()
    again = Relay()
    asyncio.run(sender(restarted, again).handle(FeedCalls(), records(batch)))
    assert again.mailed == []
    published = [decode_event(v) for v in restarted.producer.values(restarted.names.events)]
    assert sorted((e.kind, e.recipient) for e in published) == sorted(("sent", r.recipient) for r in batch)
    assert {e.event_id for e in published} == {outcome_event_id("sent", r.message_id, 1) for r in batch}
    assert restarted.metrics.value("mailpulse_worker_sends_total", outcome="duplicate") == len(batch)
    restarted.output.close()
