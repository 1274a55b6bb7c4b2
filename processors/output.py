"""Everything the worker writes to Kafka, through one librdkafka producer, acknowledged per batch.

faust sends each record (table changelogs included) through its Python producer path, tens of
microseconds a record; the agents write a few records per event, so that path capped a worker at a
few thousand events/s. Here records go to librdkafka (acks=all, idempotent, murmur2 like every
producer of the project) and an agent awaits :meth:`Output.flush` before its batch's offsets can be
committed: at-least-once, as before.

Table writes keep faust's changelog format (JSON key and value, the source event's partition), so
faust recovers the tables from these records as it does from its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import faust.streams as faust_streams
import msgspec
from confluent_kafka import KafkaError, Message, Producer

from schemas.kafka_config import producer_config
from schemas.settings import Settings

_json = msgspec.json.Encoder()


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` faust's current event, as stream iteration does for one event at a time.

    Batched agents (``take_events``) have no current event, and faust stores need one: its partition
    is where a write goes.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


class OutputError(RuntimeError):
    """Kafka did not acknowledge a record within librdkafka's delivery timeout."""


class Output:
    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(producer_config(settings, **{"linger.ms": 2, "batch.size": 1_000_000}))
        self._lock = threading.Lock()
        self._errors: list[str] = []
        # Changelog partition -> highest acknowledged offset, for stores that remember what they hold.
        self._changelog_offsets: dict[tuple[str, int], int] = {}

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err}")

    def _on_changelog_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._on_delivery(err, msg)
            return
        tp = (msg.topic() or "", msg.partition() or 0)
        with self._lock:
            self._changelog_offsets[tp] = max(self._changelog_offsets.get(tp, -1), msg.offset() or 0)

    def produce(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None, changelog: bool = False
    ) -> None:
        callback = self._on_changelog_delivery if changelog else self._on_delivery
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, key=key, value=value, on_delivery=callback)
                else:
                    self._producer.produce(topic, key=key, value=value, partition=partition, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let acknowledgements drain it

    @staticmethod
    def read(table: Any, key: str, source: Any) -> Any:
        """``table.get(key)`` in the partition of the ``source`` event.

        A RocksDB store looks a key up in the partition of faust's current event; in a batched agent
        that is whatever event the task saw last, and a read there would miss the key (and the write
        after it would reset the entry). Memory stores ignore the partition.
        """
        with event_context(source):
            return table.get(key)

    def write(self, table: Any, key: str, value: str, source: Any) -> None:
        """``table[key] = value`` for the partition of the ``source`` event, with its changelog record."""
        with event_context(source):
            table.data[key] = value
        self.produce(
            table.changelog_topic.get_topic_name(),
            _json.encode(key),
            _json.encode(value),
            partition=source.message.partition,
            changelog=True,
        )

    async def flush(self, tables: list[Any] | None = None) -> None:
        """Wait until Kafka acknowledged everything produced so far; raise if anything was refused."""
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(None, self._producer.flush, 300.0)
        with self._lock:
            errors, self._errors = self._errors, []
            offsets, self._changelog_offsets = self._changelog_offsets, {}
        if errors or remaining:
            raise OutputError(f"{len(errors) + remaining} record(s) not acknowledged: {'; '.join(errors[:3])}")
        if tables:
            self._remember_offsets(tables, offsets)

    @staticmethod
    def _remember_offsets(tables: list[Any], offsets: dict[tuple[str, int], int]) -> None:
        from faust.types import TP

        by_topic = {table.changelog_topic.get_topic_name(): table for table in tables}
        for (topic, partition), offset in offsets.items():
            table = by_topic.get(topic)
            if table is not None:
                # RocksDB stores then recover only what came after, instead of the whole changelog.
                table.data.set_persisted_offset(TP(topic, partition), offset)

    def close(self) -> None:
        self._producer.flush(30.0)
