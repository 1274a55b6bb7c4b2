"""One batch's table writes and output records, from the first write until Kafka acknowledged them.

The commit order, written once (docs/guarantees.md tells what it guarantees):

1. **apply** (status ``begun``): the batch's table writes and output records go to Kafka as they are
   made; a write is read back from the pending writes, not yet from its store;
2. **prepare** (``prepared``): nothing more is added; wait until Kafka acknowledged every record
   produced so far, this batch's and any made before them;
3. **commit** (``committed``): the writes reach their stores;
4. then, and only then, the feed commits the batch's offsets (:mod:`processors.partition_feed`), or a
   feed with resume marks writes them in a transaction of its own (:mod:`processors.marks`).

A refused record, or pending writes dropped meanwhile because another batch's record was refused, ends
the transaction ``dropped`` (:class:`processors.output.OutputError`): nothing of it reached a store,
its offsets are not committed, and the batch is read again. Records already acknowledged stay; applying
the batch again is idempotent (by event id, message id and source offset).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from processors.store import K, PartitionStore

if TYPE_CHECKING:
    from processors.output import Output


class TransactionStatus(enum.StrEnum):
    BEGUN = "begun"
    PREPARED = "prepared"
    COMMITTED = "committed"
    DROPPED = "dropped"


class TransactionClosed(RuntimeError):
    """A write or record after the transaction left ``begun``: it would not be covered by its commit."""


class Transaction:
    __slots__ = ("_output", "_since", "_wrote", "status")

    def __init__(self, output: Output) -> None:
        self._output = output
        # Pending writes dropped so far: a drop after this point may have taken this batch's writes.
        self._since = output.drops
        self._wrote = False
        self.status = TransactionStatus.BEGUN

    def _open(self) -> Output:
        if self.status is not TransactionStatus.BEGUN:
            raise TransactionClosed(f"the transaction is {self.status}")
        return self._output

    def read(self, store: PartitionStore[K], key: K, partition: int) -> str | None:
        """``key`` as this worker last wrote it (by any batch), acknowledged or not, else as stored."""
        return self._output.read(store, key, partition)

    def write(self, store: PartitionStore[K], key: K, value: str, partition: int) -> None:
        self._open().write(store, key, value, partition)
        self._wrote = True

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self._open().produce(topic, key, value, partition)

    async def commit(self) -> None:
        """Steps 2 and 3; raises :class:`processors.output.OutputError` (status ``dropped``) when Kafka
        refused a record or this batch's writes were dropped."""
        output = self._open()
        self.status = TransactionStatus.PREPARED
        try:
            # Writes dropped for another batch's refused record matter only to a batch that wrote.
            await output.flush(self._since if self._wrote else None)
        except BaseException:
            self.status = TransactionStatus.DROPPED
            raise
        self.status = TransactionStatus.COMMITTED
