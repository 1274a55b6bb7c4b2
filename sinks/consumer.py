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

from schemas.codec import DecodeError
from schemas.settings import Settings
from schemas.topics import Topics
from sinks.rows import EVENTS, SUPPRESSION_CHANGES, Row, TableMapping
from sinks.store import EventStore

log = logging.getLogger(__name__)


class ReasonedDlqProducer(KafkaDlqProducer):
    """Arroyo's Kafka DLQ producer, plus the reason as a header."""

    def produce(self, value: BrokerValue[KafkaPayload], reason: str | None = None) -> Any:
        value.payload.headers.append(("reason", (reason or "invalid message").encode()))
        return super().produce(value, reason)


def mapper(mapping: TableMapping) -> Callable[[Message[KafkaPayload]], Row]:
    def map_message(message: Message[KafkaPayload]) -> Row:
        value = message.value
        assert isinstance(value, BrokerValue)
        try:
            return mapping.to_row(value.payload.value, value.partition.index, value.offset)
        except DecodeError as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s", value.partition.topic.name, value.partition.index, value.offset, exc
            )
            raise InvalidMessage(value.partition, value.offset, reason=str(exc)) from None

    return map_message


def _accumulate(batch: list[Row], message: BaseValue[Row]) -> list[Row]:
    batch.append(message.payload)
    return batch


class TableSinkFactory(ProcessingStrategyFactory[KafkaPayload]):
    def __init__(
        self,
        store: EventStore,
        mapping: TableMapping,
        batch_size: int,
        batch_seconds: float,
        on_insert: Callable[[int, float], None] | None = None,
    ) -> None:
        self.store = store
        self.mapping = mapping
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.on_insert = on_insert or (lambda rows, seconds: None)

    def _insert(self, message: Message[list[Row]]) -> list[Row]:
        rows = message.payload
        started = time.perf_counter()
        self.store.insert(self.mapping.table, self.mapping.columns, rows)
        self.on_insert(len(rows), time.perf_counter() - started)
        return rows

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[KafkaPayload]:
        insert_then_commit: RunTask[list[Row], list[Row]] = RunTask(self._insert, CommitOffsets(commit))
        batch: Reduce[Row, list[Row]] = Reduce(
            self.batch_size, self.batch_seconds, _accumulate, list, insert_then_commit
        )
        return RunTask(mapper(self.mapping), batch)


def build_sink_processor(
    settings: Settings,
    store: EventStore,
    mapping: TableMapping = EVENTS,
    topic: str | None = None,
    group_id: str = "mailpulse-sink",
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
        processor_factory=TableSinkFactory(
            store, mapping, settings.sink_batch_size, settings.sink_batch_seconds, on_insert
        ),
        commit_policy=ONCE_PER_SECOND,
        dlq_policy=DlqPolicy(ReasonedDlqProducer(dlq_producer, Topic(topics.dead_letter)), DlqLimit()),
    )


def build_sink_processors(settings: Settings, store: EventStore) -> list[StreamProcessor[KafkaPayload]]:
    """One processor per source topic: raw events and the suppression audit trail."""
    topics = Topics.for_prefix(settings.topic_prefix)
    return [
        build_sink_processor(settings, store, EVENTS, topics.events, group_id=f"{settings.topic_prefix}-sink"),
        build_sink_processor(
            settings,
            store,
            SUPPRESSION_CHANGES,
            topics.suppression,
            group_id=f"{settings.topic_prefix}-sink-suppression",
        ),
    ]
