"""A feed handler that applies a topic's batches to a table and marks, per partition, how far they got.

The mark is the next offset the table expects from a source partition, kept in the table itself. It is
written only once every other record of the batch (each table's changelog, the audit and output topics)
is acknowledged, in a transaction of its own: a mark durable beside a refused record would let a
restarted worker resume past what that record stood for (an unsubscribe, say). A worker taking the
partition reads on from the mark, which no separately committed offset can promise: faust's committed
offsets were seen to pass records no batch had applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

from processors.feed import FeedControl, FeedRecord, PrecedingBatchFailed
from processors.output import Output
from processors.store import K, PartitionStore
from processors.transaction import Transaction

# Applies one batch's records in order: table writes and records through the transaction, not yet committed.
Apply = Callable[[Transaction, list[FeedRecord]], None]


class MarkedFeed(Generic[K]):
    def __init__(self, output: Output, store: PartitionStore[K], mark: Callable[[int], K], apply: Apply) -> None:
        self._output, self._store, self._mark, self._apply = output, store, mark, apply

    def resume_from(self, partition: int) -> int | None:
        """Where a worker given ``partition`` reads from; None when nothing of it was ever applied."""
        held = self._output.read(self._store, self._mark(partition), partition)
        return int(held) if held else None

    async def handle(self, feed: FeedControl, records: list[FeedRecord]) -> dict[int, int]:
        applied = self._output.transaction()
        self._apply(applied, records)
        # A feed of depth 2 reads and applies the next batch while Kafka acknowledges this one's records.
        # That batch reads these writes as pending; should this one fail, its writes made so far are
        # dropped with this one's (so its commit fails), and one read after the failure is not applied.
        feed.release()
        await applied.commit()
        if not await feed.preceding():
            raise PrecedingBatchFailed("a batch read before this one failed")  # its mark would pass that batch
        marks = self._output.transaction()
        last = {record.message.partition: record.message.offset for record in records}
        for partition, offset in last.items():
            marks.write(self._store, self._mark(partition), str(offset + 1), partition)
        await marks.commit()  # the marks acknowledged before the next batch
        return {partition: offset + 1 for partition, offset in last.items()}
