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
import time
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
# librdkafka reports on every record within its delivery timeout (message.timeout.ms); this only guards
# against a report that never comes.
FLUSH_TIMEOUT_SECONDS = 330.0
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


class Acknowledgements:
    """Which records Kafka has answered for, by epoch: :meth:`close` ends the open epoch, and its future
    resolves once every record of it and of each epoch before it has its delivery report.

    librdkafka's own flush waits until nothing at all is in flight. The worker's feeds produce all the
    time (the sender an answer's sent mark and events as each answer comes), so a batch's flush waited
    for records produced after it began, up to hundreds of milliseconds while the sender ran; an
    unsubscribe's batch waited as long before its offsets could commit.

    ``produced`` is called on the event loop's thread (as is ``close``); ``reported`` on whichever thread
    serves the delivery reports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.epoch = 0  # the open epoch: what is produced now belongs to it
        self._produced: dict[int, int] = {0: 0}  # per epoch, final once the epoch is closed
        self._reported: dict[int, int] = {0: 0}
        self._settled_upto = -1  # every epoch up to this one has all its reports
        self._waiting: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def produced(self) -> int:
        """Count a record of the open epoch; its delivery report must call :meth:`reported` with the answer."""
        epoch = self.epoch
        self._produced[epoch] += 1
        return epoch

    def reported(self, epoch: int) -> None:
        with self._lock:
            self._reported[epoch] += 1
            if epoch < self.epoch:
                self._settle()

    def close(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """End the open epoch; the future resolves once it and every epoch before it are answered for."""
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            closing = self.epoch
            self.epoch += 1
            self._produced[self.epoch] = self._reported[self.epoch] = 0
            self._waiting.append((closing, loop, done))
            self._settle()
        return done

    def _settle(self) -> None:
        """With the lock held: move past every closed epoch answered for, and wake who waited for it."""
        upto = self._settled_upto
        while upto + 1 < self.epoch and self._reported[upto + 1] == self._produced[upto + 1]:
            upto += 1
            del self._reported[upto], self._produced[upto]
        if upto == self._settled_upto:
            return
        self._settled_upto = upto
        still = []
        for epoch, loop, done in self._waiting:
            if epoch <= upto:
                loop.call_soon_threadsafe(_resolve, done)
            else:
                still.append((epoch, loop, done))
        self._waiting = still


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


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
        self._drops = 0
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

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
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

        epoch = self._acks.epoch

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._on_delivery(err, msg)
            else:
                with self._lock:
                    if seq > self._dropped_upto:
                        self._offsets[seq] = msg.offset() or 0
            self._acks.reported(epoch)

        self._produce(
            table.changelog_topic.get_topic_name(),
            _json.encode(key),
            _json.encode(value),
            source.message.partition,
            delivered,
        )

    def begin(self) -> int:
        """A batch starts: pass the answer to :meth:`flush`, which then fails if writes were dropped since."""
        return self._drops

    async def flush(self, since: int | None = None) -> None:
        """Wait until Kafka acknowledged everything produced so far (not what is produced meanwhile), then
        apply the table writes made before this call to their stores.

        Raises :class:`OutputError` if anything was refused (dropping every pending write), or if pending
        writes were dropped since ``since`` (from :meth:`begin`): this batch's own writes may be among them.
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
        self._closed.set()
        self._serving.join(1.0)
