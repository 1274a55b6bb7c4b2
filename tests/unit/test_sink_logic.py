from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.events import Click, Open, new_event_id
from schemas.report import REPORT_KEYS, with_rates
from sinks.consumer import WriteFailed, with_retries
from sinks.rows import COLUMNS, event_to_row

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_rows_match_columns_and_carry_kafka_position() -> None:
    click = Click(
        event_id=new_event_id(),
        occurred_at=NOW,
        campaign_id="c",
        message_id="m",
        recipient="a@b.org",
        url="https://x.example/",
        user_agent="UA",
    )
    row = dict(zip(COLUMNS, event_to_row(click, 3, 42), strict=True))
    assert row["kind"] == "click" and row["url"] == "https://x.example/" and row["agent_class"] == "human"
    assert row["kafka_partition"] == 3 and row["kafka_offset"] == 42 and row["smtp_code"] == 0
    aggregate = Open(event_id="e", occurred_at=NOW, campaign_id="c", message_id="m")
    assert dict(zip(COLUMNS, event_to_row(aggregate, 0, 0), strict=True))["recipient"] == ""


def test_rates_derive_from_counts() -> None:
    report = with_rates(
        {
            "sent": 10,
            "delivered": 8,
            "opens_unique_human": 4,
            "clicks_unique": 2,
            "bounced_hard": 1,
            "bounced_soft": 1,
            "complaints": 1,
        },
        attempted=10,
    )
    assert tuple(report) == REPORT_KEYS
    assert report["open_rate"] == 0.5 and report["click_rate"] == 0.25
    assert report["bounce_rate"] == 0.2 and report["complaint_rate"] == 0.125
    assert with_rates({}, attempted=0)["open_rate"] == 0.0


def test_inserts_are_retried_with_doubling_waits_until_they_succeed() -> None:
    outcomes = [RuntimeError("refused"), RuntimeError("refused"), None]
    waits: list[float] = []
    failures: list[int] = []

    def insert() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    with_retries(insert, 5, lambda attempt, exc: failures.append(attempt), waits.append)
    assert failures == [1, 2] and waits == [0.5, 1.0] and not outcomes


def test_an_insert_that_keeps_failing_raises_after_the_last_attempt_without_waiting_after_it() -> None:
    waits: list[float] = []

    def insert() -> None:
        raise RuntimeError("Code: 469. Constraint violated")

    with pytest.raises(WriteFailed, match="failed 8 times: Code: 469"):
        with_retries(insert, 8, lambda attempt, exc: None, waits.append)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
