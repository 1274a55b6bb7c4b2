"""Where a feed starts reading a partition it is given (pure: no broker involved)."""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID

from processors.partition_feed import FeedMessage, FeedRecord, PartitionFeed


async def _nothing(feed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
    return {}


def feed(resume_from: Any = None) -> PartitionFeed:
    app: Any = SimpleNamespace(conf=SimpleNamespace(id="unit"))
    return PartitionFeed(
        app,
        name="events",
        topic="t",
        follows="t-changelog",
        bootstrap_servers="127.0.0.1:9",
        batch_size=10,
        handle=_nothing,
        resume_from=resume_from,
    )


def test_a_feed_without_marks_starts_at_the_committed_offset() -> None:
    assert feed()._start_offset(3) == OFFSET_INVALID


def test_a_feed_with_marks_starts_at_the_mark_and_without_one_at_the_beginning() -> None:
    marks = {0: 120, 1: 0}
    started = feed(marks.get)
    assert started._start_offset(0) == 120
    assert started._start_offset(1) == 0
    # No mark: nothing of the partition was durably applied (or the tables are being rebuilt), so a
    # committed offset must not skip any of it.
    assert started._start_offset(2) == OFFSET_BEGINNING


def test_a_feed_record_looks_like_a_faust_event_to_the_stores() -> None:
    record = FeedRecord(FeedMessage("t", 4, 17), b"v")
    assert (record.message.partition, record.message.offset, record.value) == (4, 17, b"v")
    assert weakref.ref(record)() is record  # faust holds its current event by weak reference
    assert "17" in repr(record) and b"v" not in repr(record).encode()
