"""Resume marks: written only once everything else of the batch is acknowledged, and read back on restart."""

from __future__ import annotations

import asyncio

import pytest

from processors.feed import FeedMessage, FeedRecord
from processors.marks import MarkedFeed
from processors.output import OutputError
from processors.store import DictStore
from processors.transaction import Transaction
from tests.support.worker_harness import FeedCalls, Harness


def test_marks_follow_each_partition_and_a_refused_record_leaves_them_where_they_were() -> None:
    harness = Harness()
    table = DictStore[str]("state", "state-changelog")
    audit = "audit"

    def apply(tx: Transaction, records: list[FeedRecord]) -> None:
        for record in records:
            tx.write(table, f"seen|{record.message.offset}", "1", record.message.partition)
            tx.produce(audit, key=b"k", value=record.value)

    feed = MarkedFeed(harness.output, table, lambda p: f"mark|{p}", apply)
    assert feed.resume_from(0) is None  # nothing applied yet: read from the beginning

    def batch(*coordinates: tuple[int, int]) -> list[FeedRecord]:
        return [FeedRecord(FeedMessage("t", p, o), b"v") for p, o in coordinates]

    assert asyncio.run(feed.handle(FeedCalls(), batch((0, 0), (0, 1), (2, 7)))) == {0: 2, 2: 8}
    assert (feed.resume_from(0), feed.resume_from(2), feed.resume_from(1)) == (2, 8, None)
    harness.producer.refuse(audit)  # the broker refuses one of the batch's records
    with pytest.raises(OutputError):
        asyncio.run(feed.handle(FeedCalls(), batch((0, 2), (2, 8))))
    assert (feed.resume_from(0), feed.resume_from(2)) == (2, 8)  # a restart reads the batch again
    assert "seen|2" not in table.data
    harness.output.close()
