from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from processors import campaign_totals as rollups
from processors import engagement as eng
from schemas.alerts import AlertLevel
from schemas.events import AgentClass, AnyEvent, Open, Sent
from tests.support.models import event_stream, report_model

CAMPAIGNS = ["spring", "autumn"]


def fold(events: list[AnyEvent]) -> tuple[dict[str, eng.Counts], dict[tuple[str, int], eng.Counts]]:
    """Run the incremental aggregation: per-message states, campaign totals and campaign-hours."""
    states: dict[str, eng.MessageState] = {}
    totals: dict[str, eng.Counts] = {}
    hours: dict[tuple[str, int], eng.Counts] = {}
    for event in events:
        if not event.message_id:
            continue
        before = states.get(event.message_id, eng.EMPTY_MESSAGE)
        states[event.message_id], delta = eng.apply_event(before, event)
        for hour, counts in delta.items():
            totals[event.campaign_id] = eng.add_counts(totals.get(event.campaign_id, {}), counts)
            key = (event.campaign_id, hour)
            hours[key] = eng.add_counts(hours.get(key, {}), counts)
    return totals, hours


def test_incremental_counts_equal_the_report_definition() -> None:
    events = event_stream(7, CAMPAIGNS, 400)
    totals, _ = fold(events)
    for campaign in CAMPAIGNS:
        assert rollups.report(totals[campaign]) == report_model(events, campaign)
    assert report_model(events, "spring")["opens_machine"] > 0  # the stream exercises every count


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_order_and_repetition_do_not_change_the_counts(seed: int) -> None:
    events = event_stream(seed, ["c"], 60)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    expected, expected_hours = fold(events)
    assert fold(shuffled)[0] == expected
    assert fold(events + events)[0] == expected  # the same stream twice
    assert fold(shuffled)[1] == expected_hours  # hours by earliest event time: arrival order does not matter
    assert rollups.report(expected.get("c", {})) == report_model(events, "c")


def test_hours_add_up_to_the_totals() -> None:
    events = event_stream(3, ["c"], 300)
    totals, hours = fold(events)
    summed: eng.Counts = {}
    for counts in hours.values():
        summed = eng.add_counts(summed, counts)
    assert summed == totals["c"]
    assert len(hours) > 3


def test_a_bounce_after_sent_moves_the_message_out_of_delivered() -> None:
    at = datetime(2026, 11, 20, 9, tzinfo=UTC)
    base = {"campaign_id": "c", "message_id": "m", "recipient": "a@x.org"}
    state, delta = eng.apply_event(eng.EMPTY_MESSAGE, Sent(event_id="1", occurred_at=at, **base))
    assert delta == {eng.epoch_hour(at): {"sent": 1, "delivered": 1, "attempted": 1}}
    from schemas.events import Bounce, BounceClass

    later = datetime(2026, 11, 20, 11, tzinfo=UTC)
    bounce = Bounce(event_id="2", occurred_at=later, bounce_class=BounceClass.SOFT, **base)
    state, delta = eng.apply_event(state, bounce)
    bounced = {"bounced_soft": 1, "reason:undetermined": 1, "provider:other:soft": 1}
    assert delta == {eng.epoch_hour(at): {"delivered": -1}, eng.epoch_hour(later): bounced}


def test_unique_human_opens_count_once_per_message() -> None:
    at = datetime(2026, 11, 20, 9, tzinfo=UTC)
    base = {"campaign_id": "c", "message_id": "m", "recipient": "a@x.org", "occurred_at": at}
    state = eng.EMPTY_MESSAGE
    total: eng.Counts = {}
    for i, agent in enumerate([AgentClass.HUMAN, AgentClass.APPLE_MPP, AgentClass.HUMAN, AgentClass.HUMAN]):
        state, delta = eng.apply_event(state, Open(event_id=str(i), agent_class=agent, **base))
        total = eng.add_counts(total, delta.get(eng.epoch_hour(at), {}))
    assert total == {"opens_total": 4, "opens_machine": 1, "opens_unique_human": 1}


def test_tally_skips_what_its_accumulator_already_counted() -> None:
    stored = eng.Accumulator(offset=10, counts={"sent": 1, "opens_total": 2})
    tally = eng.Tally(stored)
    assert not tally.add({"sent": 1}, offset=10)  # redelivered after a crash
    assert tally.add({"sent": 1, "opens_total": -2}, offset=11)
    assert tally.add({"clicks_total": 1}, offset=12)
    assert not tally.add({"clicks_total": 1}, offset=12)
    assert tally.freeze() == eng.Accumulator(offset=12, counts={"sent": 2, "clicks_total": 1})
    assert stored.counts == {"sent": 1, "opens_total": 2}  # the stored accumulator is left as it was


def test_rollup_keeps_the_newest_partial_of_each_partition() -> None:
    rollup = rollups.merge_partial(rollups.EMPTY_ROLLUP, 0, eng.Accumulator(offset=5, counts={"sent": 5}))
    rollup = rollups.merge_partial(rollup, 1, eng.Accumulator(offset=2, counts={"sent": 2}))
    stale = rollups.merge_partial(rollup, 0, eng.Accumulator(offset=4, counts={"sent": 4}))
    assert stale is rollup
    assert rollups.total(rollup.partials.values()) == {"sent": 7}
    decoded = rollups.decode_rollup(eng.encode_state(rollup))
    assert decoded == rollup


def test_complaint_alert_levels_follow_the_bulk_sender_lines() -> None:
    policy = rollups.AlertPolicy(warning_rate=0.001, critical_rate=0.003, min_delivered=1000)
    assert rollups.alert_level({"delivered": 10_000, "complaints": 10}, policy) == ""  # exactly 0.1%: not above
    assert rollups.alert_level({"delivered": 10_000, "complaints": 11}, policy) == "warning"
    assert rollups.alert_level({"delivered": 10_000, "complaints": 31}, policy) == "critical"
    assert rollups.alert_level({"delivered": 999, "complaints": 500}, policy) == ""  # too little mail to judge
    assert AlertLevel.NONE.rank < AlertLevel.WARNING.rank < AlertLevel.CRITICAL.rank
