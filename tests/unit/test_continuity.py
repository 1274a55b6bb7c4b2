"""Holes in what a worker applied: found from the tables' marks, filled in order before the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from processors.continuity import Continuity, RangeReader, missing_range
from processors.output import Output
from processors.partition_feed import FeedMessage, FeedRecord

TOPIC = "events"


def record(partition: int, offset: int) -> FeedRecord:
    return FeedRecord(FeedMessage(TOPIC, partition, offset), f"{partition}:{offset}".encode())


class Store:
    """The table and the output in one: writes land at flush, as with :class:`processors.output.Output`."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.pending: dict[str, str] = {}
        self.flushes = 0

    def read(self, table: Any, key: str, source: Any) -> str | None:
        return self.pending.get(key, self.data.get(key))

    def write(self, table: Any, key: str, value: str, source: Any) -> None:
        assert key == f"o|{source.message.partition}"
        self.pending[key] = value

    async def flush(self) -> None:
        self.data.update(self.pending)
        self.pending.clear()
        self.flushes += 1


class Log:
    """The topic: every offset exists; reads are recorded."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int, int]] = []

    async def read(self, partition: int, start: int, end: int) -> list[FeedRecord]:
        self.reads.append((partition, start, end))
        return [record(partition, offset) for offset in range(start, end)]


def continuity(store: Store, log: Log, applied: list[tuple[int, int]], filled: list[int]) -> Continuity:
    def apply(sources: Sequence[Any]) -> None:
        applied.extend((s.message.partition, s.message.offset) for s in sources)

    return Continuity(
        cast(Any, None),
        topic=TOPIC,
        table=None,
        mark_key=lambda partition: f"o|{partition}",
        output=cast(Output, store),
        reader=cast(RangeReader, log),
        apply=apply,
        on_filled=filled.append,
    )


def test_missing_range() -> None:
    assert missing_range(None, 40) is None  # no mark yet: wherever the partition starts
    assert missing_range(5, 5) is None
    assert missing_range(5, 3) is None  # read again: applied again, idempotently
    assert missing_range(5, 9) == (5, 9)


def test_a_hole_is_read_and_applied_before_the_record_that_revealed_it() -> None:
    store, log, applied, filled = Store(), Log(), [], []
    guard = continuity(store, log, applied, filled)
    asyncio.run(guard.run([record(0, 0), record(1, 10), record(0, 1)]))
    assert store.data == {"o|0": "2", "o|1": "11"}
    asyncio.run(guard.run([record(0, 5), record(1, 11), record(0, 6)]))
    assert log.reads == [(0, 2, 5)]
    assert filled == [3]
    assert applied[3:] == [(0, 2), (0, 3), (0, 4), (0, 5), (1, 11), (0, 6)]
    assert store.data == {"o|0": "7", "o|1": "12"}
    assert store.flushes == 2


def test_marks_survive_the_worker_and_a_re_read_is_no_hole() -> None:
    store, log, applied, filled = Store(), Log(), [], []
    asyncio.run(continuity(store, log, applied, filled).run([record(2, 0), record(2, 1)]))
    restarted = continuity(store, log, applied, filled)  # a new worker, the same table
    asyncio.run(restarted.run([record(2, 1), record(2, 2)]))
    assert log.reads == []
    asyncio.run(restarted.run([record(2, 9)]))
    assert log.reads == [(2, 3, 9)]
    assert store.data["o|2"] == "10"
