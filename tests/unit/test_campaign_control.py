"""Pause, resume and cancel: the campaign book, the sender's gate and hand-off, and the held feed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec

from processors.campaign_book import CAMPAIGN_CANCELLED, CAMPAIGN_PAUSED, CampaignBook, CampaignState
from processors.feed import FeedMessage, FeedRecord
from processors.held import HeldRelease
from schemas.campaigns import CampaignAction, campaign_record, control_event, queued_event
from schemas.codec import decode_event, decode_send_request, encode
from schemas.events import SendRequest
from tests.support.worker_harness import BookGate, FeedCalls, Harness
from tests.unit.test_sender import Relay, records, request, sender

AT = datetime(2026, 12, 2, 9, tzinfo=UTC)


def control(action: CampaignAction, campaign: str = "c", minutes: int = 0, event_id: str | None = None) -> object:
    return control_event(action, campaign, event_id=event_id, at=AT + timedelta(minutes=minutes))


def test_the_book_follows_pause_resume_and_a_final_cancel() -> None:
    book = CampaignBook()
    assert book.state("c") is CampaignState.ACTIVE and book.reasons("c") == []
    pause = control(CampaignAction.PAUSE, event_id="p1")
    assert book.apply(pause) and book.reasons("c") == [CAMPAIGN_PAUSED]  # type: ignore[arg-type]
    assert not book.apply(pause)  # the same event again: nothing changes
    assert book.apply(control(CampaignAction.RESUME, minutes=1))  # type: ignore[arg-type]
    assert book.state("c") is CampaignState.ACTIVE
    assert not book.apply(control(CampaignAction.RESUME, minutes=2))  # type: ignore[arg-type]  # not paused
    assert book.apply(control(CampaignAction.CANCEL, minutes=3))  # type: ignore[arg-type]
    for later in (CampaignAction.RESUME, CampaignAction.PAUSE):  # a cancel is final
        assert not book.apply(control(later, minutes=4))  # type: ignore[arg-type]
    assert book.reasons("c") == [CAMPAIGN_CANCELLED]
    status = book.status("c")
    assert status is not None and status.paused_at == AT and status.cancelled_at == AT + timedelta(minutes=3)


def test_queued_requests_count_once_per_intake() -> None:
    book = CampaignBook()
    first = queued_event("c", [f"m{i}" for i in range(5)])
    again = queued_event("c", [f"m{i}" for i in reversed(range(5))])  # the same intake, retried
    other = queued_event("c", ["m9"])
    for event in (first, again, other):
        book.apply(event)
    assert first.event_id == again.event_id
    status = book.status("c")
    assert status is not None and status.queued == 6 and status.state is CampaignState.ACTIVE


def test_the_compacted_topic_rebuilds_the_same_book() -> None:
    history = [
        queued_event("c", ["m1", "m2"]),
        control(CampaignAction.PAUSE, minutes=1),
        control(CampaignAction.RESUME, minutes=2),
        control(CampaignAction.PAUSE, minutes=3),
        control(CampaignAction.CANCEL, minutes=4),
        control(CampaignAction.RESUME, minutes=5),  # refused live: the campaign was cancelled
        queued_event("d", ["m3"]),
        control(CampaignAction.PAUSE, "d", minutes=6),
    ]
    live = CampaignBook()
    for event in history:
        live.apply(event)  # type: ignore[arg-type]
    # Compaction keeps the latest record of each key, in offset order.
    latest: dict[bytes, tuple[int, bytes]] = {}
    for offset, event in enumerate(history):
        key, value = campaign_record(event)  # type: ignore[arg-type]
        latest[key] = (offset, value)
    rebuilt = CampaignBook()
    for _, value in sorted(latest.values()):
        rebuilt.apply(decode_event(value))
    assert (
        [(s.campaign_id, s.state, s.queued) for s in rebuilt.all()]
        == [(s.campaign_id, s.state, s.queued) for s in live.all()]
        == [("c", CampaignState.CANCELLED, 2), ("d", CampaignState.PAUSED, 1)]
    )


def paused_gate(campaign: str = "c") -> BookGate:
    gate = BookGate()
    gate.book.apply(control(CampaignAction.PAUSE, campaign))  # type: ignore[arg-type]
    return gate


def held(harness: Harness) -> list[SendRequest]:
    return [decode_send_request(v) for v in harness.producer.values(harness.names.held)]


def test_a_paused_campaign_is_held_at_the_gate_and_a_cancelled_one_skipped() -> None:
    harness = Harness()
    gate = paused_gate("paused")
    gate.book.apply(control(CampaignAction.CANCEL, "gone"))  # type: ignore[arg-type]
    relay = Relay()
    batch = [request("a@example.org", "paused"), request("b@example.org", "gone"), request("c@example.org", "on")]
    asyncio.run(sender(harness, relay, gate=gate).handle(FeedCalls(), records(batch)))
    assert relay.mailed == ["c@example.org"]
    assert [(r.recipient, r.held_at is not None) for r in held(harness)] == [("a@example.org", True)]
    skipped = [decode_event(v) for v in harness.producer.values(harness.names.events) if b"send.skipped" in v]
    assert [(e.recipient, e.reason) for e in skipped] == [("b@example.org", CAMPAIGN_CANCELLED)]  # type: ignore[union-attr]
    assert harness.metrics.value("mailpulse_worker_sends_total", outcome="held") == 1
    harness.output.close()


def test_a_campaign_paused_while_its_batch_waits_is_held_at_the_hand_off() -> None:
    harness = Harness()
    gate = BookGate()

    handoffs = []

    def pause_after_the_first() -> None:  # the operator pauses once the first message was handed over
        handoffs.append(1)
        if len(handoffs) == 2:
            gate.book.apply(control(CampaignAction.PAUSE))  # type: ignore[arg-type]

    relay = Relay(on_handoff=pause_after_the_first)
    batch = [request(f"r{i}@example.org") for i in range(4)]
    asyncio.run(sender(harness, relay, gate=gate).handle(FeedCalls(), records(batch)))
    assert relay.mailed == ["r0@example.org"]  # the pause was applied before the next message's hand-off
    assert sorted(r.recipient for r in held(harness)) == ["r1@example.org", "r2@example.org", "r3@example.org"]
    harness.output.close()


def held_records(harness: Harness, requests: list[SendRequest], partition: int = 0) -> list[FeedRecord]:
    topic = harness.names.held
    return [FeedRecord(FeedMessage(topic, partition, i), encode(r)) for i, r in enumerate(requests)]


def test_the_held_feed_waits_while_paused_then_sends_what_a_resume_released() -> None:
    harness = Harness()
    gate = paused_gate()
    clock = [AT.timestamp() + 60]
    job = HeldRelease(harness.output, gate, harness.settings, harness.metrics, clock=lambda: clock[0])
    waiting = [msgspec.structs.replace(request(f"{n}@example.org"), held_at=AT) for n in ("a", "b")]
    feed = FeedCalls()
    assert asyncio.run(job.handle(feed, held_records(harness, waiting))) == {}
    assert [(p, o) for p, o, _ in feed.rests] == [(0, 0)]  # still paused: the partition rests at its head
    assert harness.producer.values(harness.names.outbox) == []

    class Waking:
        woken = 0

        def wake(self) -> None:
            Waking.woken += 1

    gate.book.apply(control(CampaignAction.RESUME, minutes=1))  # type: ignore[arg-type]
    job.wake(Waking())
    assert Waking.woken == 1
    assert asyncio.run(job.handle(FeedCalls(), held_records(harness, waiting))) == {0: 2}
    released = [decode_send_request(v) for v in harness.producer.values(harness.names.outbox)]
    assert [(r.recipient, r.held_at) for r in released] == [("a@example.org", None), ("b@example.org", None)]
    harness.output.close()


def test_on_a_wake_a_campaign_still_paused_moves_back_behind_one_resumed() -> None:
    harness = Harness()
    gate = paused_gate("still")
    gate.book.apply(control(CampaignAction.PAUSE, "resumed"))  # type: ignore[arg-type]
    clock = [AT.timestamp() + 60]
    job = HeldRelease(harness.output, gate, harness.settings, harness.metrics, clock=lambda: clock[0])
    line = [
        msgspec.structs.replace(request("s1@example.org", "still"), held_at=AT),
        msgspec.structs.replace(request("r1@example.org", "resumed"), held_at=AT),
    ]
    gate.book.apply(control(CampaignAction.RESUME, "resumed", minutes=1))  # type: ignore[arg-type]

    class Feed:
        def wake(self) -> None:
            pass

    job.wake(Feed())
    feed = FeedCalls()
    assert asyncio.run(job.handle(feed, held_records(harness, line))) == {0: 2}
    moved = held(harness)
    assert [(r.recipient, r.held_at is not None and r.held_at > AT) for r in moved] == [("s1@example.org", True)]
    assert [decode_send_request(v).recipient for v in harness.producer.values(harness.names.outbox)] == [
        "r1@example.org"
    ]
    # Met again after the wake, the moved request makes the partition rest instead of going round again.
    feed = FeedCalls()
    assert asyncio.run(job.handle(feed, held_records(harness, moved, partition=3))) == {}
    assert [(p, o) for p, o, _ in feed.rests] == [(3, 0)]
    harness.output.close()
