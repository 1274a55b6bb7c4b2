"""The events job and the campaign rollup over memory stores: what a stream of events leaves in the tables,
with and without crashes, compared with models written from the rules' definitions."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from processors import campaign_totals as totals
from processors.state_keys import RollupKeys, address
from processors.suppression import decode_entry, suppression_reasons
from schemas.bounce_reasons import BounceReason
from schemas.codec import decode_block_alert, decode_event, decode_suppression_change
from schemas.events import AnyEvent, Bounce, BounceClass, Open, Sent, Unsubscribe, UnsubscribeScope
from tests.support.models import event_stream, report_model, suppression_model
from tests.support.worker_harness import Harness

CAMPAIGNS = ["spring", "autumn"]
AT = datetime(2026, 11, 20, 9, tzinfo=UTC)


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.output.close()


def live_report(harness: Harness, campaign: str) -> dict[str, object]:
    stored = harness.tables.campaign_totals.lookup(RollupKeys.campaign(campaign))
    return totals.report(totals.total(totals.decode_rollup(stored).partials.values()))


def suppressed(harness: Harness) -> dict[str, list[str]]:
    """Every suppressed address of the table, with its reasons."""
    held = harness.tables.suppression.data.items()  # type: ignore[attr-defined]
    reasons = {key: suppression_reasons(decode_entry(value)) for key, value in held}
    return {key: why for key, why in reasons.items() if why}


def model(events: list[AnyEvent], harness: Harness) -> dict[str, list[str]]:
    return {key: why for key, why in suppression_model(events, harness.settings).items() if why}


def test_a_stream_of_events_leaves_the_tables_the_models_say(harness: Harness) -> None:
    events = event_stream(11, CAMPAIGNS, 300)
    harness.publish(events)
    harness.drain(batch_size=97)
    for campaign in CAMPAIGNS:
        assert live_report(harness, campaign) == report_model(events, campaign)
    assert suppressed(harness) == model(events, harness)
    assert harness.metrics.value("mailpulse_worker_events_total") == len(events)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_worker_killed_between_batches_and_marks_counts_nothing_twice(seed: int) -> None:
    """Crash anywhere, as often as you like: the tables end as if nothing had happened."""
    rng = random.Random(seed)
    events = event_stream(seed, CAMPAIGNS, 200)
    worker = Harness()
    worker.publish(events)
    while worker.unread(worker.names.events, worker.events) or worker.unread(
        worker.names.campaign_partials, worker.partials
    ):
        # A few batches go through whole, then one is applied and acknowledged but not marked, then SIGKILL.
        worker.run(worker.names.events, worker.events, batch_size=rng.randrange(20, 120), batches=rng.randrange(0, 3))
        worker.run(worker.names.campaign_partials, worker.partials, batch_size=40, batches=rng.randrange(0, 3))
        events_topic, partials_topic = worker.names.events, worker.names.campaign_partials
        match rng.randrange(4):
            case 0:
                worker.apply_without_marks(events_topic, worker.events, worker.tracker.apply, rng.randrange(5, 80))
            case 1:
                worker.apply_without_marks(partials_topic, worker.partials, worker.rollup.apply, 30)
            case 2:  # killed with the batch's records in flight: some reached the broker, some never
                reach = rng.random()
                worker.apply_and_die(events_topic, worker.events, worker.tracker.apply, rng.randrange(5, 80), reach)
            case _:
                worker.apply_and_die(partials_topic, worker.partials, worker.rollup.apply, 30, rng.random())
        worker = worker.restarted()
    worker.drain()
    for campaign in CAMPAIGNS:
        assert live_report(worker, campaign) == report_model(events, campaign)
    assert suppressed(worker) == model(events, worker)
    worker.output.close()


def test_a_change_of_suppression_is_audited_and_audited_again_when_its_event_is_read_again() -> None:
    worker = Harness()
    base = {"campaign_id": "c", "list_id": "news", "recipient": "Reader@Example.org"}
    unsubscribe = Unsubscribe(event_id="u1", occurred_at=AT, message_id="m1", scope=UnsubscribeScope.ALL, **base)
    opened = Open(event_id="o1", occurred_at=AT, message_id="m1", **base)
    worker.publish([opened, unsubscribe])
    worker.apply_without_marks(worker.names.events, worker.events, worker.tracker.apply)
    audits = [decode_suppression_change(v) for v in worker.producer.values(worker.names.suppression)]
    assert [(a.recipient, a.reasons, a.caused_by) for a in audits] == [("reader@example.org", ["unsubscribed"], "u1")]
    # The audit record may be the one Kafka refused while the change was kept: read again, it is made again,
    # the same record (same time, same cause), which the compacted topic and the audit table keep once.
    worker = worker.restarted()
    worker.publish([unsubscribe])  # and a redelivery of the event itself
    worker.drain()
    again = [decode_suppression_change(v) for v in worker.producer.values(worker.names.suppression)]
    assert again == audits * 3
    assert suppressed(worker) == {address("reader@example.org"): ["unsubscribed"]}
    # An event that changes nothing (an open) is never audited.
    assert {a.caused_by for a in again} == {"u1"}
    worker.output.close()


def test_undecodable_events_are_counted_and_skipped_and_the_rest_applied(harness: Harness) -> None:
    sent = Sent(event_id="s1", occurred_at=AT, campaign_id="c", message_id="m1", recipient="a@example.org")
    harness.publish([sent])
    harness.producer.produce(harness.names.events, key=b"a@example.org", value=b'{"kind": "open", "broken": ')
    harness.producer.release()
    harness.drain()
    assert harness.metrics.value("mailpulse_worker_undecodable_total", topic="events") == 1
    assert live_report(harness, "c")["sent"] == 1


def test_aggregate_events_count_for_their_campaign_and_suppress_nobody(harness: Harness) -> None:
    anonymous = [
        Open(event_id=f"o{i}", occurred_at=AT, campaign_id="agg", message_id=f"m{i}", recipient=None) for i in range(5)
    ]
    harness.publish(anonymous)
    harness.drain()
    assert live_report(harness, "agg")["opens_total"] == 5
    assert harness.tables.suppression.data == {}  # type: ignore[attr-defined]


def test_a_domain_blocking_a_campaign_raises_one_block_alert() -> None:
    worker = Harness()
    blocked = [
        Bounce(
            event_id=f"b{i}",
            occurred_at=AT + timedelta(seconds=i),
            campaign_id="c",
            message_id=f"m{i}",
            recipient=f"r{i}@blocked.example",
            bounce_class=BounceClass.BLOCK,
            reason=BounceReason.BLOCKED,
            diagnostic="554 5.7.1 blocked using zen.spamhaus.org",
        )
        for i in range(60)
    ]
    fine = [
        Sent(event_id=f"s{i}", occurred_at=AT, campaign_id="c", message_id=f"n{i}", recipient=f"r{i}@fine.example")
        for i in range(60)
    ]
    worker.publish(fine + blocked)
    worker.drain()
    alerts = [decode_block_alert(v) for v in worker.producer.values(worker.names.alerts)]
    # One alert at the alert line (5 %), one when the pause line (20 %) is crossed, which pauses the campaign.
    assert [(a.campaign_id, a.domain, a.threshold, a.paused) for a in alerts] == [
        ("c", "blocked.example", 0.05, False),
        ("c", "blocked.example", 0.2, True),
    ]
    assert {a.top_diagnostic for a in alerts} == {"554 5.7.1 blocked using zen.spamhaus.org"}
    [pause] = [decode_event(v) for v in worker.producer.values(worker.names.campaigns)]
    assert (pause.kind, pause.campaign_id, pause.source) == ("campaign.paused", "c", "automatic")  # type: ignore[union-attr]
    assert "block rate" in pause.reason and "blocked.example" in pause.reason  # type: ignore[union-attr]
    assert not suppressed(worker)  # a block is the sender's problem: nobody is suppressed
    worker.drain()  # read again (a crash before the marks): the same pause, which the campaign book applies once
    worker.output.close()


def test_auto_pause_off_pauses_nothing() -> None:
    from schemas.settings import Settings

    worker = Harness(
        Settings.from_env({"MAILPULSE_AUTO_PAUSE": "false", "MAILPULSE_COMPLAINT_ALERT_MIN_DELIVERED": "50"})
    )
    blocked = [
        Bounce(
            event_id=f"b{i}", occurred_at=AT, campaign_id="c", message_id=f"m{i}", recipient=f"r{i}@blocked.example",
            bounce_class=BounceClass.BLOCK, reason=BounceReason.BLOCKED,
        )
        for i in range(60)
    ]  # fmt: skip
    worker.publish(blocked)
    worker.drain()
    assert worker.producer.values(worker.names.campaigns) == []
    assert len(worker.producer.values(worker.names.alerts)) == 1  # the alert still comes
    worker.output.close()


def test_a_complaint_spike_alerts_once_per_level_as_it_climbs() -> None:
    worker = Harness()
    base = {"campaign_id": "loud", "list_id": "news"}
    sends: list[AnyEvent] = [
        Sent(event_id=f"s{i}", occurred_at=AT, message_id=f"m{i}", recipient=f"r{i}@x.org", **base) for i in range(100)
    ]
    from schemas.events import Complaint

    complaints: list[AnyEvent] = [
        Complaint(event_id=f"c{i}", occurred_at=AT, message_id=f"m{i}", recipient=f"r{i}@x.org", **base)
        for i in range(3)
    ]
    worker.publish(sends)
    worker.drain()
    worker.publish(complaints)  # 3 of 100: past the critical line (0.3 % of delivered)
    worker.drain(batch_size=1)
    worker.publish(complaints)  # redelivered: no new alert
    worker.drain()
    from schemas.codec import decode_complaint_alert

    raised = [decode_complaint_alert(v) for v in worker.producer.values(worker.names.alerts)]
    assert [(a.level, a.paused) for a in raised] == [("critical", True)]  # 1 in 100 is past both lines at once
    [pause] = [decode_event(v) for v in worker.producer.values(worker.names.campaigns)]
    assert (pause.kind, pause.campaign_id, pause.source) == ("campaign.paused", "loud", "automatic")  # type: ignore[union-attr]
    assert "complaint rate" in pause.reason  # type: ignore[union-attr]
    rollup = totals.decode_rollup(worker.tables.campaign_totals.lookup(RollupKeys.campaign("loud")))
    assert rollup.alert_level == "critical"
    worker.output.close()
