"""A producer that keeps what it is given in memory, for unit tests of the worker's logic.

It answers like confluent-kafka's ``Producer`` as far as :class:`processors.output.Output` uses it:
``produce`` queues a record, ``poll`` serves delivery reports (each record gets the next offset of its
topic-partition), ``flush`` serves them all. It can hold its reports back (``hold``), deliver only some
(``release``), and refuse every record of a topic as a broker would (``refuse``). The integration tests
run against the real broker; these only stand in for it where the logic around it is under test.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from processors.routing import partition_for

Report = Callable[[Any, Any], None]


class DeliveredRecord:
    """What a delivery report carries (confluent-kafka's ``Message``, the parts that are read)."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self.key, self.value = key, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class MemoryProducer:
    def __init__(self, partitions: int = 6) -> None:
        self.partitions = partitions
        self.hold = False
        self.refused: set[str] = set()
        # Acknowledged records per topic, in order: what a consumer (or faust's recovery) would read.
        self.log: dict[str, list[DeliveredRecord]] = defaultdict(list)
        self._queued: list[tuple[str, int, bytes, bytes, Report | None]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._ready = threading.Condition()

    def produce(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None, on_delivery: Report | None = None
    ) -> None:
        if partition is None:
            partition = partition_for(key, self.partitions)
        with self._ready:
            self._queued.append((topic, partition, key, value, on_delivery))
            self._ready.notify_all()

    def refuse(self, topic: str) -> None:
        """Every later record of ``topic`` is refused, as a broker refuses a record too large."""
        self.refused.add(topic)

    def release(self, count: int | None = None) -> int:
        """Deliver the first ``count`` queued records (all by default), even while holding; how many went."""
        with self._ready:
            taken = self._queued[:count] if count is not None else list(self._queued)
            del self._queued[: len(taken)]
        for topic, partition, key, value, report in taken:
            self._deliver(topic, partition, key, value, report)
        return len(taken)

    def release_topic(self, topic: str) -> int:
        """Deliver the queued records of ``topic`` only (its partitions' leaders answer, the others' do not)."""
        with self._ready:
            taken = [q for q in self._queued if q[0] == topic]
            self._queued = [q for q in self._queued if q[0] != topic]
        for queued_topic, partition, key, value, report in taken:
            self._deliver(queued_topic, partition, key, value, report)
        return len(taken)

    def lose(self) -> int:
        """Drop every queued record, as the broker never got them (their producer was killed); how many."""
        with self._ready:
            lost, self._queued = len(self._queued), []
        return lost

    def _deliver(self, topic: str, partition: int, key: bytes, value: bytes, report: Report | None) -> None:
        if topic in self.refused:
            record = DeliveredRecord(topic, partition, -1, key, value)
            if report is not None:
                report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), record)
            return
        offset = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] = offset + 1
        record = DeliveredRecord(topic, partition, offset, key, value)
        self.log[topic].append(record)
        if report is not None:
            report(None, record)

    def poll(self, timeout: float = 0.0) -> int:
        with self._ready:
            if not self._queued or self.hold:
                self._ready.wait(timeout)
            if self.hold:
                return 0
        return self.release()

    def flush(self, timeout: float = 0.0) -> int:
        if self.hold:
            return len(self._queued)
        self.release()
        return 0

    def values(self, topic: str) -> list[bytes]:
        return [record.value for record in self.log[topic]]

    def changelog(self, topic: str) -> list[tuple[bytes, bytes]]:
        return [(record.key, record.value) for record in self.log[topic]]
