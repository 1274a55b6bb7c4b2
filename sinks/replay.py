"""Replay: re-read a topic range into ClickHouse.

Reads with its own consumer (no group commits, the live sink is untouched)
from a time or an offset up to a time or the end offsets seen at the start,
and inserts through the same row mapping as the live sink. Reports count
distinct ids, so a replay never changes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from schemas.codec import DecodeError
from schemas.settings import Settings
from schemas.topics import Topics
from sinks.rows import EVENTS, SUPPRESSION_CHANGES, MappedRow, TableMapping
from sinks.store import EventStore


class ReplayError(ValueError):
    pass


@dataclass
class ReplayProgress:
    topic: str
    total: int = 0
    read: int = 0
    inserted: int = 0
    undecodable: int = 0
    finished: bool = False
    error: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mapping_for(settings: Settings, topic: str) -> TableMapping:
    topics = Topics.for_prefix(settings.topic_prefix)
    if topic in (topics.events, topics.campaigns):
        return EVENTS
    if topic == topics.suppression:
        return SUPPRESSION_CHANGES
    raise ReplayError(f"cannot replay {topic!r}: choose {topics.events}, {topics.campaigns} or {topics.suppression}")


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def plan(
    consumer: Consumer, topic: str, from_time: datetime | None, from_offset: int | None, to_time: datetime | None
) -> list[tuple[int, int, int]]:
    """(partition, first offset, end offset exclusive) for every partition with something to read."""
    if (from_time is None) == (from_offset is None):
        raise ReplayError("give exactly one of --from-time and --from-offset")
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ReplayError(f"topic {topic!r} not found")
    ranges = []
    for partition in sorted(metadata.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if from_time is not None:
            (found,) = consumer.offsets_for_times([TopicPartition(topic, partition, _millis(from_time))], timeout=10)
            start = found.offset if found.offset >= 0 else high
        else:
            start = max(low, from_offset or 0)
        end = high
        if to_time is not None:
            (found,) = consumer.offsets_for_times([TopicPartition(topic, partition, _millis(to_time))], timeout=10)
            end = found.offset if found.offset >= 0 else high
        if end > start:
            ranges.append((partition, start, end))
    return ranges


def replay(
    settings: Settings,
    store: EventStore,
    topic: str,
    from_time: datetime | None = None,
    from_offset: int | None = None,
    to_time: datetime | None = None,
    progress: ReplayProgress | None = None,
    on_progress: Callable[[ReplayProgress], None] = lambda p: None,
    batch_size: int = 50_000,
) -> ReplayProgress:
    mapping = mapping_for(settings, topic)
    state = progress or ReplayProgress(topic=topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.topic_prefix}-replay-{state.id}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        ranges = plan(consumer, topic, from_time, from_offset, to_time)
        state.total = sum(end - start for _, start, end in ranges)
        ends = {partition: end for partition, _, end in ranges}
        consumer.assign([TopicPartition(topic, partition, start) for partition, start, _ in ranges])
        batch: list[MappedRow] = []
        last_report = 0.0
        while ends:
            messages = consumer.consume(10_000, timeout=1.0)
            if not messages:
                # Compaction can remove the last offsets of a range: done once the position passed the end.
                positions = consumer.position([TopicPartition(topic, p) for p in ends])
                for tp in positions:
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
                        consumer.incremental_unassign([TopicPartition(topic, tp.partition)])
            for msg in messages:
                if msg.error() or msg.partition() not in ends:
                    continue
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if offset >= ends[partition]:
                    continue
                state.read += 1
                try:
                    batch.append(mapping.to_row(msg.value() or b"", partition, offset))
                except DecodeError:
                    state.undecodable += 1
                if offset + 1 >= ends[partition]:
                    del ends[partition]
                    consumer.incremental_unassign([TopicPartition(topic, partition)])
            if len(batch) >= batch_size or (batch and not ends):
                store.write(mapping, batch)
                state.inserted += len(batch)
                batch = []
            if time.monotonic() - last_report >= 1.0 or not ends:
                last_report = time.monotonic()
                on_progress(state)
    except ReplayError as exc:
        state.error = str(exc)
        raise
    except Exception as exc:
        state.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        state.finished = True
        consumer.close()
    return state


class ReplayJobs:
    """Replays running inside the sink process (which owns the embedded store)."""

    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.jobs: dict[str, ReplayProgress] = {}

    def start(
        self, topic: str, from_time: datetime | None, from_offset: int | None, to_time: datetime | None
    ) -> ReplayProgress:
        mapping_for(self.settings, topic)  # refuse an unknown topic before starting
        if (from_time is None) == (from_offset is None):
            raise ReplayError("give exactly one of from_time and from_offset")
        state = ReplayProgress(topic=topic)
        self.jobs[state.id] = state

        def run() -> None:
            # A failure is recorded on the progress object the caller polls.
            with contextlib.suppress(Exception):
                replay(self.settings, self.store, topic, from_time, from_offset, to_time, progress=state)

        threading.Thread(target=run, name=f"replay-{state.id}", daemon=True).start()
        return state
