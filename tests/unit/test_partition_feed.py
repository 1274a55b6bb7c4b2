"""Where a feed starts reading a partition it is given (pure: no broker involved)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from processors.feed import FeedMessage, FeedRecord
from processors.partition_feed import PartitionFeed


async def _nothing(feed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
    return {}


def feed(resume_from: Any = None) -> PartitionFeed:
    host: Any = SimpleNamespace(group_prefix="unit")
    return PartitionFeed(
        host,
        name="events",
        topic="t",
        bootstrap_servers="127.0.0.1:9",
        batch_size=10,
        handle=_nothing,
        resume_from=resume_from,
    )


def test_a_feed_without_marks_starts_at_the_committed_offset() -> None:
    assert feed()._start_offset(3) == OFFSET_INVALID


def test_a_feed_with_marks_starts_at_the_mark_and_without_one_at_the_beginning() -> None:
    marks = {0: 120, 1: 0}
    started = feed(marks.get)
    assert started._start_offset(0) == 120
    assert started._start_offset(1) == 0
    # No mark: nothing of the partition was durably applied (or the tables are being rebuilt), so a
    # committed offset must not skip any of it.
    assert started._start_offset(2) == OFFSET_BEGINNING


def test_a_feed_record_shows_where_it_came_from_and_not_its_content() -> None:
    record = FeedRecord(FeedMessage("t", 4, 17), b"v")
    assert (record.message.partition, record.message.offset, record.value) == (4, 17, b"v")
    assert "17" in repr(record) and b"v" not in repr(record).encode()


class _Commits:
    """Stands in for the consumer's commit (the feed's ordering is under test, not librdkafka)."""

    def __init__(self) -> None:
        self.made: list[list[tuple[int, int]]] = []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.made.append([(tp.partition, tp.offset) for tp in offsets])


def _records(partition: int, *offsets: int) -> list[FeedRecord]:
    return [FeedRecord(FeedMessage("t", partition, offset), b"") for offset in offsets]


def _deep_feed(handle: Any, depth: int) -> PartitionFeed:
    started = feed()
    started.handle, started._depth, started._assigned = handle, depth, frozenset({0})
    return started


async def _ends(records: list[FeedRecord], gates: dict[int, Any], failing: set[int]) -> dict[int, int]:
    last = records[-1].message
    await gates[last.offset].wait()
    if last.offset in failing:
        raise RuntimeError("the relay went away")
    return {last.partition: last.offset + 1}


def test_a_deeper_feed_reads_on_once_released_and_commits_in_read_order() -> None:
    import asyncio

    async def run() -> list[list[tuple[int, int]]]:
        gates = {1: asyncio.Event(), 3: asyncio.Event()}

        async def handle(fed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
            fed.release()  # what is left only waits
            return await _ends(records, gates, set())

        deep, consumer = _deep_feed(handle, 2), _Commits()
        assert await deep._start(consumer, _records(0, 0, 1))  # returns while the first batch still waits
        second = asyncio.ensure_future(deep._start(consumer, _records(0, 2, 3)))
        gates[3].set()  # the second batch ends first ...
        await asyncio.sleep(0.05)
        assert consumer.made == []  # ... and still commits after the first
        assert not second.done()  # two in hand: a third is read only once the first ended
        gates[1].set()
        assert await second
        await deep._settled()
        return consumer.made

    assert asyncio.run(run()) == [[(0, 2)], [(0, 4)]]


def test_a_failed_batch_fails_the_one_after_it_and_commits_neither() -> None:
    import asyncio

    async def run() -> tuple[bool, list[list[tuple[int, int]]]]:
        gates = {1: asyncio.Event(), 3: asyncio.Event()}

        async def handle(fed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
            fed.release()
            return await _ends(records, gates, failing={1})

        deep, consumer = _deep_feed(handle, 2), _Commits()
        assert await deep._start(consumer, _records(0, 0, 1))
        gates[3].set()
        second = asyncio.ensure_future(deep._start(consumer, _records(0, 2, 3)))
        await asyncio.sleep(0.05)
        gates[1].set()
        return await second, consumer.made

    ok, made = asyncio.run(run())
    assert not ok and made == []  # both are read again from the last commit


def test_a_feed_of_depth_one_handles_one_batch_at_a_time() -> None:
    import asyncio

    async def run() -> list[str]:
        seen: list[str] = []

        async def handle(fed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
            fed.release()  # no effect at depth 1
            seen.append(f"start {records[0].message.offset}")
            await asyncio.sleep(0.02)
            seen.append(f"end {records[0].message.offset}")
            return {0: records[-1].message.offset + 1}

        shallow, consumer = _deep_feed(handle, 1), _Commits()
        assert await shallow._start(consumer, _records(0, 0))
        assert await shallow._start(consumer, _records(0, 1))
        assert consumer.made == [[(0, 1)], [(0, 2)]]
        return seen

    assert asyncio.run(run()) == ["start 0", "end 0", "start 1", "end 1"]


class _PausingConsumer:
    """librdkafka's pause as measured against the broker: a paused partition stays paused through assign
    and unassign, until resumed."""

    def __init__(self) -> None:
        self.assigned: list[int] = []
        self.paused: set[int] = set()

    def assign(self, tps: list[Any]) -> None:
        self.assigned = [tp.partition for tp in tps]

    def pause(self, tps: list[Any]) -> None:
        self.paused |= {tp.partition for tp in tps}

    def resume(self, tps: list[Any]) -> None:
        self.paused -= {tp.partition for tp in tps}

    def seek(self, tp: Any) -> None:
        pass

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        return [TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in tps]

    def readable(self) -> set[int]:
        return set(self.assigned) - self.paused


def test_a_partition_resting_when_a_rebalance_comes_is_read_again_once_assigned() -> None:
    import asyncio

    async def run() -> set[int]:
        started, consumer = feed(), _PausingConsumer()
        started._consumer = consumer  # type: ignore[assignment]
        await started._assign(consumer, frozenset({0, 1}))  # type: ignore[arg-type]
        started.rest(0, 1708, 3600)  # its next request is not due for an hour
        await started._call(lambda: None)  # the feed's thread made its calls
        assert consumer.readable() == {1}
        # A rebalance: revoked, and given back (or given to this worker after another's death).
        await started._on_revoked()
        await started._assign(consumer, frozenset({0, 1, 2}))  # type: ignore[arg-type]
        return consumer.readable()

    assert asyncio.run(run()) == {0, 1, 2}


def test_a_wake_up_queued_behind_a_read_never_undoes_the_rest_that_follows_it() -> None:
    import asyncio
    import threading

    async def run() -> set[int]:
        started, consumer = feed(), _PausingConsumer()
        started._consumer = consumer  # type: ignore[assignment]
        await started._assign(consumer, frozenset({0}))  # type: ignore[arg-type]
        started.rest(0, 10, 3600)
        reading = threading.Event()
        started._pool.submit(reading.wait, 5)  # the feed's thread is in a consume() call
        started.wake()  # its resume waits behind that read ...
        started.rest(0, 12, 3600)  # ... and the handler rests the partition again meanwhile
        reading.set()
        await started._call(lambda: None)
        return consumer.readable()

    # Still resting: a resume run after the pause would have it fetched, dropped as resting, and skipped.
    assert asyncio.run(run()) == set()


def test_a_feeds_status_shows_the_batch_in_hand_until_it_ends() -> None:
    import asyncio

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        gates = {1: asyncio.Event()}

        async def handle(fed: PartitionFeed, records: list[FeedRecord]) -> dict[int, int]:
            fed.release()
            return await _ends(records, gates, set())

        deep, consumer = _deep_feed(handle, 2), _Commits()
        assert await deep._start(consumer, _records(0, 0, 1))
        await asyncio.sleep(0.02)
        waiting = deep.status()
        gates[1].set()
        await deep._settled()
        await asyncio.sleep(0)
        return waiting, deep.status()

    waiting, ended = asyncio.run(run())
    assert waiting["reads"] == [0] and waiting["batches_in_hand"] == 1
    assert waiting["oldest_batch_seconds"] >= 0.02
    assert ended["batches_in_hand"] == 0 and ended["oldest_batch_seconds"] is None


class _MovedCoordinator(_PausingConsumer):
    """The group's coordinator moved (a broker restarted): the first asks for committed offsets are refused."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.offsets: list[tuple[int, int]] = []

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
        return [TopicPartition(tp.topic, tp.partition, {0: 293}.get(tp.partition, OFFSET_INVALID)) for tp in tps]

    def assign(self, tps: list[Any]) -> None:
        super().assign(tps)
        self.offsets = [(tp.partition, tp.offset) for tp in tps]


def test_a_feed_asks_again_for_its_committed_offsets_and_assigns_them_explicitly() -> None:
    import asyncio

    async def run() -> tuple[list[tuple[int, int]], set[int]]:
        started, consumer = feed(), _MovedCoordinator(refusals=2)
        started.host.settling = lambda: False
        await started._assign(consumer, frozenset({0, 2}))  # type: ignore[arg-type]
        return consumer.offsets, consumer.readable()

    offsets, readable = asyncio.run(run())
    # Never OFFSET_INVALID, which leaves the lookup to librdkafka: refused once, it never fetched them.
    assert offsets == [(0, 293), (2, OFFSET_BEGINNING)] and readable == {0, 2}


def test_a_rebalance_during_the_lookup_leaves_the_feed_unassigned_for_the_run_loop_to_retry() -> None:
    import asyncio

    async def run() -> tuple[list[tuple[int, int]], Any]:
        started, consumer = feed(), _MovedCoordinator(refusals=100)
        started.host.settling = lambda: True
        await started._assign(consumer, frozenset({0}))  # type: ignore[arg-type]
        return consumer.offsets, started._assigned

    offsets, assigned = asyncio.run(run())
    assert offsets == [] and assigned is None
