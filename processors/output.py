"""Everything the worker writes to Kafka, through one librdkafka producer, acknowledged per batch.

faust sends each record (table changelogs included) through its Python producer path, tens of
microseconds a record; the worker writes a few records per event, so that path capped a worker at a
few thousand events/s. Here records go to librdkafka (acks=all, idempotent, murmur2 like every
producer of the project), and a batch's :class:`processors.transaction.Transaction` waits for their
acknowledgement before the batch's offsets can be committed: at-least-once.

A table write is its changelog record (:func:`processors.store.changelog_record`, in the source
event's partition), and it reaches the table's store only once Kafka acknowledged that record (until
then :meth:`Output.read` answers from the pending writes): a RocksDB store must never hold a value its
changelog lacks. It did, and after a SIGKILL faust's recovery laid older changelog values over some
keys and left newer local ones on others; a message's facts and the counts they led to then disagreed
and counts were lost (`tests/integration/test_worker_recovery.py`, about one run in three).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Message, Producer

from processors.acknowledgements import Acknowledgements
from processors.store import K, PartitionStore, changelog_record
from processors.transaction import Transaction
from schemas.kafka_config import producer_config
from schemas.settings import Settings

# librdkafka reports on every record within its delivery timeout (message.timeout.ms); this only guards
# against a report that never comes.
FLUSH_TIMEOUT_SECONDS = 330.0
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class OutputError(RuntimeError):
    """Kafka did not acknowledge a record within librdkafka's delivery timeout."""


class PendingWrite(NamedTuple):
    seq: int
    store: PartitionStore[Any]
    key: str
    value: str
    partition: int


class Output:
    """Shared by every feed of the worker; each batch writes through a :meth:`transaction` of its own.

    When Kafka refuses a record, every table write not yet in its store is dropped, whoever made it: some
    of their changelog records may be missing, and a store must not get a value its changelog lacks. Each
    batch that had writes in flight then fails at its commit and is read again from its tables' marks (or
    its committed offsets), which the dropped writes no longer hide; applying it again writes them again.
    """

    def __init__(self, settings: Settings, producer: Any = None, **overrides: Any) -> None:
        """``producer``: anything with confluent-kafka's ``produce``/``poll``/``flush`` (unit tests pass one
        that answers in memory); by default a librdkafka producer with ``overrides`` over its settings."""
        config = producer_config(settings, **{"linger.ms": 2, "batch.size": 1_000_000, **overrides})
        self._producer = producer if producer is not None else Producer(config)
        self._acks = Acknowledgements()
        # The open epoch's delivery report for records that are no table write (one callback for many records).
        self._report: tuple[int, DeliveryCallback] | None = None
        self._lock = threading.Lock()
        self._errors: list[str] = []
        # Table writes in write order, not yet in their stores, and the latest of them per key.
        self._seq = 0
        self._pending: list[PendingWrite] = []
        self._latest: dict[tuple[int, str], tuple[int, str]] = {}
        # Write seq -> changelog offset, from delivery reports: what a store may remember it holds.
        self._offsets: dict[int, int] = {}
        # How many times pending writes were dropped, and the last seq dropped.
        self.drops = 0
        self._dropped_upto = 0
        # Delivery reports are served on a thread of their own, as they come, whoever waits for them.
        self._closed = threading.Event()
        self._serving = threading.Thread(target=self._serve, name="output-delivery-reports", daemon=True)
        self._serving.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err}")

    def _report_for(self, epoch: int) -> DeliveryCallback:
        if self._report is not None and self._report[0] == epoch:
            return self._report[1]

        def report(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            self._acks.reported(epoch)

        self._report = (epoch, report)  # an earlier epoch's records keep their own reference
        return report

    def transaction(self) -> Transaction:
        """A batch starts: its writes and records go through the transaction, which commits them."""
        return Transaction(self)

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        """An output record (no table write): acknowledged with the next commit."""
        self._produce(topic, key, value, partition, self._report_for(self._acks.epoch))

    def _produce(self, topic: str, key: bytes, value: bytes, partition: int | None, report: DeliveryCallback) -> None:
        """``report`` must call ``self._acks.reported`` with the open epoch (counted here once produced)."""
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, key=key, value=value, on_delivery=report)
                else:
                    self._producer.produce(topic, key=key, value=value, partition=partition, on_delivery=report)
                break
            except BufferError:
                time.sleep(0.05)  # librdkafka's queue is full: the serving thread drains it as reports come
        self._acks.produced()

    def read(self, store: PartitionStore[K], key: K, partition: int) -> str | None:
        """``key`` in ``store`` as this worker last wrote it, acknowledged or not."""
        held = self._latest.get((id(store), key))
        if held is not None:
            return held[1]
        return store.get(key, partition)

    def current(self, store: PartitionStore[K], key: K) -> str | None:
        """``key``'s value as the feeds see it, for a reader outside any batch (an HTTP view): the latest
        write, acknowledged or not, else the store's."""
        held = self._latest.get((id(store), key))
        return held[1] if held is not None else store.lookup(key)

    def write(self, store: PartitionStore[K], key: K, value: str, partition: int) -> None:
        """``store[key] = value`` in ``partition``: its changelog record now, the store once that record
        is acknowledged."""
        self._seq += 1
        seq = self._seq
        self._pending.append(PendingWrite(seq, store, key, value, partition))
        self._latest[(id(store), key)] = (seq, value)

        epoch = self._acks.epoch

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._on_delivery(err, msg)
            else:
                with self._lock:
                    if seq > self._dropped_upto:
                        self._offsets[seq] = msg.offset() or 0
            self._acks.reported(epoch)

        record_key, record_value = changelog_record(key, value)
        self._produce(store.changelog_topic, record_key, record_value, partition, delivered)

    async def flush(self, since: int | None = None) -> None:
        """Wait until Kafka acknowledged everything produced so far (not what is produced meanwhile), then
        apply the table writes made before this call to their stores.

        Raises :class:`OutputError` if anything was refused (dropping every pending write), or if pending
        writes were dropped since ``since`` (a :attr:`drops` count): that batch's own writes may be among them.
        """
        upto = self._seq
        answered = self._acks.close(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(answered, FLUSH_TIMEOUT_SECONDS)
        except TimeoutError:
            with self._lock:
                self._errors.append(f"no delivery report within {FLUSH_TIMEOUT_SECONDS:.0f} s")
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            self._drop()
            raise OutputError(f"{len(errors)} record(s) not acknowledged: {'; '.join(errors[:3])}")
        if since is not None and since != self.drops:
            raise OutputError("table writes of this batch were dropped after another batch's records were refused")
        self._apply(upto)

    def _drop(self) -> None:
        with self._lock:
            self._offsets.clear()
            self._dropped_upto = self._seq
        self._pending.clear()
        self._latest.clear()
        self.drops += 1

    def _apply(self, upto: int) -> None:
        done = 0
        persisted: dict[tuple[int, int], tuple[PartitionStore[Any], int]] = {}
        with self._lock:
            offsets = {w.seq: self._offsets.pop(w.seq, -1) for w in self._pending if w.seq <= upto}
        for write in self._pending:
            if write.seq > upto:
                break  # made while this flush waited: acknowledged by a later one
            done += 1
            write.store.set(write.key, write.value, write.partition)
            slot = (id(write.store), write.key)
            if self._latest.get(slot, (0, ""))[0] == write.seq:
                del self._latest[slot]
            held = persisted.get((id(write.store), write.partition))
            offset = max(offsets[write.seq], held[1] if held else -1)
            persisted[(id(write.store), write.partition)] = (write.store, offset)
        del self._pending[:done]
        for (_, partition), (store, offset) in persisted.items():
            if offset >= 0:
                store.persisted(partition, offset)

    def close(self) -> None:
        self._producer.flush(30.0)
        self._closed.set()
        self._serving.join(1.0)
