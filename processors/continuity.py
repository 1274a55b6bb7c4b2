"""Every record of a source partition is applied, in order, whatever offset faust resumes from.

A worker restarted after SIGKILL was seen to resume an events partition four records past the last
batch it had made durable, and nobody ever applied those four (`tests/integration/
test_worker_recovery.py`, about one full-suite run in four). faust's committed offset is not proof
that everything before it was applied: it commits the first run of consecutive acknowledged offsets
and counts offsets its fetch loop skipped as acknowledged (``Consumer._new_offset``, ``_add_gap``).

So the tables keep their own mark: per source partition, the next offset they expect, written last in
each batch into the changelog partition of the batch's other writes (durable only if they are). A
record beyond the mark reveals a hole; the missing records are read with a librdkafka consumer of
their own and applied first, in order. A hole at the end of a partition has no record after it to
reveal it, so a timer also compares an idle partition's mark with the end of the partition.

The campaign-partials agent runs through this. The events topic no longer does: it is read by a
:class:`processors.partition_feed.PartitionFeed` that starts each partition at the mark itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust
from confluent_kafka import Consumer, KafkaError, TopicPartition

from processors.output import Output
from processors.partition_feed import FeedMessage, FeedRecord

log = logging.getLogger(__name__)

# A partition with nothing read for this long is compared with the end of its log.
IDLE_SECONDS = 10.0
CHECK_EVERY_SECONDS = 5.0
# A tail is applied this many records per check, so a long one never becomes one huge batch.
TAIL_BATCH = 10_000
# Reading a hole gives up (and the agent fails) when the broker returns nothing for this long.
READ_TIMEOUT_SECONDS = 60.0

# Applies one batch's records in order (table writes through the Output, not yet flushed).
Apply = Callable[[Sequence[Any]], None]


def missing_range(expected: int | None, offset: int) -> tuple[int, int] | None:
    """The offsets ``[start, end)`` skipped before ``offset``, given the mark; None when none were."""
    if expected is None or offset <= expected:
        return None  # no mark yet, the next record, or one read again (applied again, idempotently)
    return expected, offset


class RangeReader:
    """Reads ``[start, end)`` of one partition with a librdkafka consumer that never commits."""

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str) -> None:
        self.topic = topic
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,  # required by librdkafka; never joined (manual assignment), never committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
        self._consumer: Consumer | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"holes-{topic}")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    async def end(self, partition: int) -> int:
        """The partition's high watermark: the offset its next record will get."""
        tp = TopicPartition(self.topic, partition)
        _, high = await self._call(lambda: self._client().get_watermark_offsets(tp, timeout=10, cached=False))
        return cast(int, high)

    async def read(self, partition: int, start: int, end: int) -> list[FeedRecord]:
        return cast(list[FeedRecord], await self._call(self._read, partition, start, end))

    def _read(self, partition: int, start: int, end: int) -> list[FeedRecord]:
        consumer = self._client()
        consumer.assign([TopicPartition(self.topic, partition, start)])
        records: list[FeedRecord] = []
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        try:
            while True:
                messages = consumer.consume(min(1000, max(1, end - start)), 0.5)
                for msg in messages:
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return records  # the rest is gone (retention): nothing more to apply
                        raise RuntimeError(f"reading {self.topic}[{partition}]: {error}")
                    if (msg.offset() or 0) >= end:
                        return records
                    records.append(FeedRecord.of(msg))
                if records and records[-1].message.offset >= end - 1:
                    return records
                if messages:
                    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"reading {self.topic}[{partition}] {start}-{end}: no answer")
        finally:
            consumer.unassign()


class Continuity:
    """Applies an agent's batches with the holes before them filled, and marks how far each partition got.

    ``apply`` writes the batch's table updates through ``output``; this class adds the marks after
    them and flushes, so a batch's offsets commit only once all of it (marks included) is durable.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        topic: str,
        table: Any,
        mark_key: Callable[[int], str],
        output: Output,
        reader: RangeReader,
        apply: Apply,
        on_filled: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.app, self.topic, self.table = app, topic, table
        self._mark_key, self._output, self._reader = mark_key, output, reader
        self._apply, self._on_filled = apply, on_filled
        self._lock = asyncio.Lock()  # one batch at a time: the agent's, or the timer's tail
        self._expected: dict[int, int | None] = {}  # partition -> next offset (None: no mark yet)
        self._marks: dict[int, Any] = {}  # partition -> this batch's last record there
        self._seen: dict[int, float] = {}  # partition -> when a record of it last arrived

    def connect(self) -> None:
        # mode's signal types cannot name a coroutine receiver mypy accepts.
        self.app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        self.app.timer(CHECK_EVERY_SECONDS)(self._check_tails)

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        async with self._lock:  # the batch in hand writes its marks first
            self._expected.clear()
            self._seen.clear()

    async def run(self, taken: Sequence[Any]) -> None:
        """Apply ``taken`` (faust events of one ``take_events`` batch), holes first, and flush."""
        async with self._lock:
            now = time.monotonic()
            records: list[Any] = []
            for source in taken:
                partition, offset = source.message.partition, source.message.offset
                self._seen[partition] = now
                expected = self._expected_of(partition, source)
                hole = missing_range(expected, offset)
                if hole is not None:
                    records.extend(await self._fill(partition, *hole))
                records.append(source)
                self._advance(partition, offset, source)
            await self._finish(records)

    def _expected_of(self, partition: int, source: Any) -> int | None:
        if partition not in self._expected:
            held = self._output.read(self.table, self._mark_key(partition), source)
            self._expected[partition] = int(held) if held else None
        return self._expected[partition]

    def _advance(self, partition: int, offset: int, source: Any) -> None:
        expected = self._expected.get(partition)
        if expected is None or offset >= expected:
            self._expected[partition] = offset + 1
            self._marks[partition] = source

    async def _fill(self, partition: int, start: int, end: int) -> list[FeedRecord]:
        missing = await self._reader.read(partition, start, end)
        log.warning(
            "%s[%d]: offsets %d-%d were never applied (the consumer resumed past them); applying %d read again",
            self.topic, partition, start, end - 1, len(missing),
        )  # fmt: skip
        self._on_filled(len(missing))
        for record in missing:
            self._advance(partition, record.message.offset, record)
        return missing

    async def _finish(self, records: Sequence[Any]) -> None:
        self._apply(records)
        for partition, source in self._marks.items():
            self._output.write(self.table, self._mark_key(partition), str(self._expected[partition]), source)
        self._marks.clear()
        await self._output.flush()

    def _active_partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.topic)

    async def _check_tails(self) -> None:
        """Fill holes at the end of idle partitions: no later record will come to reveal them."""
        if self.app.rebalancing or self.app.in_recovery:
            return
        for partition in self._active_partitions():
            if time.monotonic() - self._seen.setdefault(partition, time.monotonic()) < IDLE_SECONDS:
                continue
            async with self._lock:
                if self.app.rebalancing or partition not in self._active_partitions():
                    return
                probe = FeedRecord(FeedMessage(self.topic, partition, -1), b"")
                expected = self._expected_of(partition, probe)
                if expected is None:
                    continue
                end = min(await self._reader.end(partition), expected + TAIL_BATCH)
                records = await self._fill(partition, expected, end) if end > expected else []
                if records:
                    await self._finish(records)  # the next check goes on with the rest, if any
                else:
                    self._seen[partition] = time.monotonic()
