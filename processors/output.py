"""Everything the worker writes to Kafka, through one librdkafka producer, acknowledged per batch.

faust sends each record (table changelogs included) through its Python producer path, tens of
microseconds a record; the worker writes a few records per event, so that path capped a worker at a
few thousand events/s. Here records go to librdkafka (acks=all, idempotent, murmur2 like every
producer of the project) and a feed's handler awaits :meth:`Output.flush` before its batch's offsets
can be committed: at-least-once, as before.

Table writes keep faust's changelog format (JSON key and value, the source event's partition), so
faust recovers the tables from these records as it does from its own. A write reaches the table's
store only once Kafka acknowledged its changelog record (until then :meth:`Output.read` answers from
the pending writes): a RocksDB store must never hold a value its changelog lacks. It did, and after a
SIGKILL faust's recovery laid older changelog values over some keys and left newer local ones on
others; a message's facts and the counts they led to then disagreed and counts were lost
(`tests/integration/test_worker_recovery.py`, about one run in three).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import faust.streams as faust_streams
import msgspec
from confluent_kafka import KafkaError, Message, Producer
from faust.stores.memory import Store as MemoryStore

from schemas.kafka_config import producer_config
from schemas.settings import Settings

_json = msgspec.json.Encoder()
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class event_context:  # lower case: used like a function, as it was one
    """Make ``event`` faust's current event, as stream iteration does for one event at a time.

    Records read by a feed are no faust events, and faust stores need a current event: its partition
    is where a write goes. A class rather than ``@contextmanager``: it runs for every table
    read and write, and a generator costs several times more.
    """

    __slots__ = ("_event", "_token")

    def __init__(self, event: Any) -> None:
        self._event = event

    def __enter__(self) -> None:
        self._token = faust_streams._current_event.set(weakref.ref(self._event))

    def __exit__(self, *exc: object) -> None:
        faust_streams._current_event.reset(self._token)


def _store_get(table: Any, key: str, source: Any) -> Any:
    """``key`` in ``table``'s store, for the partition of ``source``; None when absent.

    The store itself, not the table: the table's own layer adds only sensor hooks and, for a missing
    key, an exception raised and caught. A memory store is a plain dict inside, the same for every
    partition, so it needs no current event either (together several microseconds a read, about a
    tenth of the worker's time per event).
    """
    store = table.data
    if type(store) is MemoryStore:
        return store.data.get(key)
    with event_context(source):
        return store.get(key)


def _store_set(table: Any, key: str, value: str, source: Any) -> None:
    """``table``'s store holds ``value`` at ``key``, in the partition of ``source`` (see :func:`_store_get`)."""
    store = table.data
    if type(store) is MemoryStore:
        store.data[key] = value
    else:
        with event_context(source):
            store[key] = value


class OutputError(RuntimeError):
    """Kafka did not acknowledge a record within librdkafka's delivery timeout."""


class PendingWrite(NamedTuple):
    seq: int
    table: Any
    key: str
    value: str
    source: Any


class Output:
    """Shared by every feed of the worker; a feed's batch starts with :meth:`begin` and ends with :meth:`flush`.

    When Kafka refuses a record, every table write not yet in its store is dropped, whoever made it: some
    of their changelog records may be missing, and a store must not get a value its changelog lacks. Each
    batch that had writes in flight then fails at its flush and is read again from its tables' marks (or
    its committed offsets), which the dropped writes no longer hide; applying it again writes them again.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._producer = Producer(producer_config(settings, **{"linger.ms": 2, "batch.size": 1_000_000, **overrides}))
        self._lock = threading.Lock()
        self._errors: list[str] = []
        # Table writes in write order, not yet in their stores, and the latest of them per key.
        self._seq = 0
        self._pending: list[PendingWrite] = []
        self._latest: dict[tuple[int, str], tuple[int, str]] = {}
        # Write seq -> changelog offset, from delivery reports: what a store may remember it holds.
        self._offsets: dict[int, int] = {}
        # How many times pending writes were dropped, and the last seq dropped.
        self._drops = 0
        self._dropped_upto = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err}")

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        callback = on_delivery or self._on_delivery
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, key=key, value=value, on_delivery=callback)
                else:
                    self._producer.produce(topic, key=key, value=value, partition=partition, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let acknowledgements drain it

    def read(self, table: Any, key: str, source: Any) -> Any:
        """``table.get(key)`` as this worker last wrote it, in the partition of the ``source`` event.

        A RocksDB store looks a key up in the partition of faust's current event; in a batched agent
        that is whatever event the task saw last, and a read there would miss the key (and the write
        after it would reset the entry). Memory stores ignore the partition.
        """
        held = self._latest.get((id(table), key))
        if held is not None:
            return held[1]
        return _store_get(table, key, source)

    def current(self, table: Any, key: str) -> Any:
        """``key``'s value as the feeds see it, for a reader outside any batch (an HTTP view): the latest
        write, acknowledged or not, else the table's."""
        held = self._latest.get((id(table), key))
        return held[1] if held is not None else table.get(key)

    def write(self, table: Any, key: str, value: str, source: Any) -> None:
        """``table[key] = value`` for the partition of the ``source`` event: its changelog record now,
        the store once that record is acknowledged (:meth:`flush`)."""
        self._seq += 1
        seq = self._seq
        self._pending.append(PendingWrite(seq, table, key, value, source))
        self._latest[(id(table), key)] = (seq, value)

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._on_delivery(err, msg)
                return
            with self._lock:
                if seq > self._dropped_upto:
                    self._offsets[seq] = msg.offset() or 0

        self.produce(
            table.changelog_topic.get_topic_name(),
            _json.encode(key),
            _json.encode(value),
            partition=source.message.partition,
            on_delivery=delivered,
        )

    def begin(self) -> int:
        """A batch starts: pass the answer to :meth:`flush`, which then fails if writes were dropped since."""
        return self._drops

    async def flush(self, since: int | None = None) -> None:
        """Wait until Kafka acknowledged everything produced so far, then apply the table writes made
        before this call to their stores.

        Raises :class:`OutputError` if anything was refused (dropping every pending write), or if pending
        writes were dropped since ``since`` (from :meth:`begin`): this batch's own writes may be among them.
        """
        upto = self._seq
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(None, self._producer.flush, 300.0)
        with self._lock:
            errors, self._errors = self._errors, []
        if errors or remaining:
            self._drop()
            raise OutputError(f"{len(errors) + remaining} record(s) not acknowledged: {'; '.join(errors[:3])}")
        if since is not None and since != self._drops:
            raise OutputError("table writes of this batch were dropped after another batch's records were refused")
        self._apply(upto)

    def _drop(self) -> None:
        with self._lock:
            self._offsets.clear()
            self._dropped_upto = self._seq
        self._pending.clear()
        self._latest.clear()
        self._drops += 1

    def _apply(self, upto: int) -> None:
        from faust.types import TP

        done = 0
        persisted: dict[tuple[int, int], tuple[Any, int]] = {}
        with self._lock:
            offsets = {w.seq: self._offsets.pop(w.seq, -1) for w in self._pending if w.seq <= upto}
        for write in self._pending:
            if write.seq > upto:
                break  # made while this flush waited: acknowledged by a later one
            done += 1
            _store_set(write.table, write.key, write.value, write.source)
            slot = (id(write.table), write.key)
            if self._latest.get(slot, (0, ""))[0] == write.seq:
                del self._latest[slot]
            partition = write.source.message.partition
            held = persisted.get((id(write.table), partition))
            offset = max(offsets[write.seq], held[1] if held else -1)
            persisted[(id(write.table), partition)] = (write.table, offset)
        del self._pending[:done]
        for (_, partition), (table, offset) in persisted.items():
            if offset >= 0:
                # RocksDB stores then recover only what came after, instead of the whole changelog.
                table.data.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), partition), offset)

    def close(self) -> None:
        self._producer.flush(30.0)
