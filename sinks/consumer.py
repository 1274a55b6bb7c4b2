"""The events -> ClickHouse consumer, built on sentry-arroyo.

The whole pipeline reads in :meth:`EventsSinkFactory.create_with_partitions`:
decode and map (bad messages raise ``InvalidMessage`` and go to the DLQ) ->
batch by size or time -> insert -> commit. Offsets commit only after the insert
that contains them succeeded; auto-commit is off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from arroyo.backends.kafka import KafkaConsumer, KafkaPayload, KafkaProducer, build_kafka_configuration
from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
from arroyo.commit import ONCE_PER_SECOND
from arroyo.dlq import DlqLimit, DlqPolicy, InvalidMessage, KafkaDlqProducer
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import (
    CommitOffsets,
    ProcessingStrategy,
    ProcessingStrategyFactory,
    Reduce,
    RunTask,
)
from arroyo.types import BaseValue, BrokerValue, Commit, Message, Partition, Topic

from schemas.codec import DecodeError, decode_event
from schemas.settings import Settings
from schemas.topics import Topics
from sinks.rows import Row, event_to_row
from sinks.store import EventStore

log = logging.getLogger(__name__)


class ReasonedDlqProducer(KafkaDlqProducer):
    """Arroyo's Kafka DLQ producer, plus the reason as a header."""

    def produce(self, value: BrokerValue[KafkaPayload], reason: str | None = None) -> Any:
        value.payload.headers.append(("reason", (reason or "invalid message").encode()))
        return super().produce(value, reason)


def map_message(message: Message[KafkaPayload]) -> Row:
    value = message.value
    assert isinstance(value, BrokerValue)
    try:
        event = decode_event(value.payload.value)
    except DecodeError as exc:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", value.partition.topic.name, value.partition.index, value.offset, exc
        )
        raise InvalidMessage(value.partition, value.offset, reason=str(exc)) from None
    return event_to_row(event, value.partition.index, value.offset)


def _accumulate(batch: list[Row], message: BaseValue[Row]) -> list[Row]:
    batch.append(message.payload)
    return batch


class EventsSinkFactory(ProcessingStrategyFactory[KafkaPayload]):
    def __init__(
        self,
        store: EventStore,
        batch_size: int,
        batch_seconds: float,
        on_insert: Callable[[int, float], None] | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.on_insert = on_insert or (lambda rows, seconds: None)

    def _insert(self, message: Message[list[Row]]) -> list[Row]:
        rows = message.payload
        started = time.perf_counter()
        self.store.insert_events(rows)
        self.on_insert(len(rows), time.perf_counter() - started)
        return rows

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[KafkaPayload]:
        insert_then_commit: RunTask[list[Row], list[Row]] = RunTask(self._insert, CommitOffsets(commit))
        batch: Reduce[Row, list[Row]] = Reduce(
            self.batch_size, self.batch_seconds, _accumulate, list, insert_then_commit
        )
        return RunTask(map_message, batch)


def build_sink_processor(
    settings: Settings,
    store: EventStore,
    group_id: str = "mailpulse-sink",
    topic: str | None = None,
    on_insert: Callable[[int, float], None] | None = None,
) -> StreamProcessor[KafkaPayload]:
    topics = Topics.for_prefix(settings.topic_prefix)
    base = build_kafka_configuration({"bootstrap.servers": settings.bootstrap_servers})
    consumer = KafkaConsumer(
        build_kafka_consumer_configuration(
            base,
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            override_params={"fetch.max.bytes": 52_428_800, "queued.max.messages.kbytes": 262_144},
        )
    )
    dlq_producer = KafkaProducer(
        build_kafka_configuration(base, override_params={"acks": "all", "enable.idempotence": True})
    )
    return StreamProcessor(
        consumer=consumer,
        topic=Topic(topic or topics.events),
        processor_factory=EventsSinkFactory(store, settings.sink_batch_size, settings.sink_batch_seconds, on_insert),
        commit_policy=ONCE_PER_SECOND,
        dlq_policy=DlqPolicy(ReasonedDlqProducer(dlq_producer, Topic(topics.dead_letter)), DlqLimit()),
    )
