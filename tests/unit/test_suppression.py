from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.suppression import (
    EMPTY,
    NEVER_CHANGES_SUPPRESSION,
    Policy,
    Reason,
    apply_event,
    decode_entry,
    encode_entry,
    suppression_reasons,
)
from schemas.events import AnyEvent, Bounce, BounceClass, Complaint, Sent, Unsubscribe, UnsubscribeScope, new_event_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = Policy(soft_bounce_threshold=3, soft_bounce_window=timedelta(days=7))


def common(at: datetime = T0, list_id: str = "news") -> dict[str, object]:
    return {
        "event_id": new_event_id(),
        "occurred_at": at,
        "campaign_id": "c",
        "message_id": "m",
        "recipient": "a@example.org",
        "list_id": list_id,
    }


def run(events: list[AnyEvent]):  # type: ignore[no-untyped-def]
    entry = EMPTY
    for event in events:
        entry = apply_event(entry, event, POLICY)
    return entry


def test_list_unsubscribe_suppresses_only_that_list() -> None:
    entry = run([Unsubscribe(**common(), scope=UnsubscribeScope.LIST)])  # type: ignore[arg-type]
    assert suppression_reasons(entry, "news") == ["unsubscribed:news"]
    assert suppression_reasons(entry, "offers") == []
    assert suppression_reasons(entry) == ["unsubscribed:news"]


def test_global_unsubscribe_hard_bounce_and_complaint_suppress_at_once() -> None:
    for event, reason in [
        (Unsubscribe(**common(), scope=UnsubscribeScope.ALL), Reason.UNSUBSCRIBED),  # type: ignore[arg-type]
        (Bounce(**common(), bounce_class=BounceClass.HARD, status="5.1.1"), Reason.HARD_BOUNCE),  # type: ignore[arg-type]
        (Complaint(**common()), Reason.COMPLAINT),  # type: ignore[arg-type]
    ]:
        entry = run([event])
        assert suppression_reasons(entry, "anything") == [reason]
        assert entry.caused_by == event.event_id and entry.since == T0


def test_soft_bounces_suppress_at_threshold_and_delivery_resets() -> None:
    def soft(day: int) -> Bounce:
        return Bounce(**common(T0 + timedelta(days=day)), bounce_class=BounceClass.SOFT, status="4.2.2")  # type: ignore[arg-type]

    two = run([soft(0), soft(1)])
    assert suppression_reasons(two, "news") == []
    assert suppression_reasons(run([soft(0), soft(1), soft(2)]), "news") == ["soft_bounce_threshold"]
    reset = run([soft(0), soft(1), Sent(**common(T0 + timedelta(days=2))), soft(3)])  # type: ignore[arg-type]
    assert suppression_reasons(reset, "news") == []


def test_the_same_event_twice_changes_nothing() -> None:
    bounce = Bounce(**common(), bounce_class=BounceClass.SOFT, status="4.2.2")  # type: ignore[arg-type]
    once = run([bounce])
    assert apply_event(once, bounce, POLICY) is once
    assert run([bounce, bounce, bounce]) == once
    unsub = Unsubscribe(**common())  # type: ignore[arg-type]
    entry = run([unsub])
    assert apply_event(entry, unsub, POLICY) is entry


def test_entry_codec_round_trips() -> None:
    entry = run([Bounce(**common(), bounce_class=BounceClass.SOFT), Unsubscribe(**common())])  # type: ignore[arg-type]
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_entry(None) == EMPTY


def manual(cls: type, at: datetime, list_id: str = "") -> AnyEvent:
    from schemas.events import SuppressionAdded, SuppressionRemoved

    assert cls in (SuppressionAdded, SuppressionRemoved)
    return cls(  # type: ignore[no-any-return]
        event_id=new_event_id(), occurred_at=at, campaign_id="", message_id="", recipient="a@x.org", list_id=list_id
    )


def test_operator_add_and_remove() -> None:
    from schemas.events import SuppressionAdded, SuppressionRemoved

    added = run([manual(SuppressionAdded, T0)])
    assert suppression_reasons(added) == ["manual"]
    removed = apply_event(added, manual(SuppressionRemoved, T0 + timedelta(hours=1)), POLICY)
    assert suppression_reasons(removed) == []
    assert removed.since is None


def test_a_removal_disarms_older_events_even_when_they_are_replayed() -> None:
    from schemas.events import SuppressionRemoved

    bounce = Bounce(**common(T0), bounce_class=BounceClass.HARD)  # type: ignore[arg-type]
    removal = manual(SuppressionRemoved, T0 + timedelta(hours=1))
    entry = run([bounce, removal, bounce])  # the bounce redelivered after the removal
    assert suppression_reasons(entry) == []
    newer = Bounce(**common(T0 + timedelta(hours=2)), bounce_class=BounceClass.HARD)  # type: ignore[arg-type]
    assert suppression_reasons(apply_event(entry, newer, POLICY)) == ["hard_bounce"]
    assert apply_event(entry, removal, POLICY) is entry  # the same removal twice changes nothing


def test_removing_one_list_keeps_global_reasons() -> None:
    from schemas.events import SuppressionRemoved

    unsub = Unsubscribe(**common(T0), scope=UnsubscribeScope.LIST)  # type: ignore[arg-type]
    complaint = Complaint(**common(T0))  # type: ignore[arg-type]
    entry = run([unsub, complaint, manual(SuppressionRemoved, T0 + timedelta(hours=1), list_id="news")])
    assert suppression_reasons(entry, "news") == ["complaint"]
    assert entry.lists == ()


def test_unattributed_reports_suppress_nobody_unless_the_operator_trusts_them() -> None:
    forged = [
        Bounce(**common(), bounce_class=BounceClass.HARD, status="5.1.1", attributed=False),  # type: ignore[arg-type]
        Complaint(**common(), attributed=False),  # type: ignore[arg-type]
    ]
    for event in forged:
        assert apply_event(EMPTY, event, POLICY) is EMPTY
    trusting = Policy(soft_bounce_threshold=3, soft_bounce_window=timedelta(days=7), trust_unattributed=True)
    assert suppression_reasons(apply_event(EMPTY, forged[0], trusting)) == [Reason.HARD_BOUNCE]
    assert suppression_reasons(apply_event(EMPTY, forged[1], trusting)) == [Reason.COMPLAINT]


def test_the_kinds_the_tracker_passes_over_change_no_entry() -> None:
    """The events tracker reads no entry for these kinds: each must leave every entry as it is."""
    from tests.unit.test_event_kinds import sample

    soft = Bounce(**common(), bounce_class=BounceClass.SOFT)  # type: ignore[arg-type]
    entries = [
        EMPTY,
        run([soft]),
        run([Unsubscribe(**common(list_id="news"), scope=UnsubscribeScope.LIST)]),  # type: ignore[arg-type]
        run([Complaint(**common(), attributed=True)]),  # type: ignore[arg-type]
    ]
    assert entries[1].soft_bounces and entries[2].lists and entries[3].reasons
    for cls in NEVER_CHANGES_SUPPRESSION:
        event = sample(cls)
        for entry in entries:
            assert apply_event(entry, event, POLICY) is entry, cls.__name__
    # A kind that can change an entry is not among them: a sent resets the soft-bounce count.
    assert apply_event(entries[1], Sent(**common()), POLICY) is not entries[1]  # type: ignore[arg-type]
    assert Sent not in NEVER_CHANGES_SUPPRESSION
