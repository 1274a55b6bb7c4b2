"""The events feed at depth 2: the next batch is applied while Kafka acknowledges the one before it.

A real :class:`processors.partition_feed.PartitionFeed` drives the worker's marked events handler over memory
stores; the in-memory producer holds, delivers or refuses the records, as a broker would answer. Whatever
fails, the tables must end as the models say once everything is read again from the marks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from processors.feed import FeedRecord
from processors.output import OutputError
from processors.partition_feed import PartitionFeed
from processors.state_keys import EngagementKeys
from schemas.events import AnyEvent
from tests.support.models import event_stream, report_model
from tests.support.worker_harness import Harness
from tests.unit.test_event_tracking import live_report, model, suppressed
from tests.unit.test_partition_feed import _Commits, _records
from tests.unit.test_partition_feed import feed as partition_feed

CAMPAIGNS = ["spring", "autumn"]


def events_feed(worker: Harness) -> PartitionFeed:
    """The worker's events feed at depth 2, reading every partition."""
    started = partition_feed(worker.events.resume_from)
    started.handle, started._depth = worker.events.handle, 2
    started._assigned = frozenset(range(worker.settings.topic_partitions))
    return started


def marks(worker: Harness) -> dict[int, str | None]:
    engagement = worker.tables.engagement
    partitions = range(worker.settings.topic_partitions)
    return {p: worker.output.read(engagement, EngagementKeys.mark(p), p) for p in partitions}


def two_batches(worker: Harness) -> tuple[list[FeedRecord], list[FeedRecord]]:
    unread = worker.unread(worker.names.events, worker.events)
    return unread[:150], unread[150:300]


def read_again_as_the_models_say(worker: Harness, events: list[AnyEvent]) -> None:
    """Everything read again from the marks: each event counted once, every suppression made."""
    worker.drain()
    for campaign in CAMPAIGNS:
        assert live_report(worker, campaign) == report_model(events, campaign)
    assert suppressed(worker) == model(events, worker)
    worker.output.close()


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def test_a_refused_batch_takes_the_one_applied_behind_it_down_and_a_reread_counts_each_event_once() -> None:
    worker = Harness()
    events = event_stream(5, CAMPAIGNS, 150)
    worker.publish(events)
    first, second = two_batches(worker)
    changelog = worker.tables.engagement.changelog_topic
    before = marks(worker)

    async def run() -> tuple[bool, bool, list[dict[int, int]]]:
        feed, consumer = events_feed(worker), _Commits()
        worker.producer.hold = True
        assert await feed._start(consumer, first)  # applied; its records wait for the broker
        first_records = len(worker.producer._queued)
        later = asyncio.ensure_future(feed._start(consumer, second))
        await _until(lambda: len(worker.producer._queued) > first_records)  # the second one applied on top
        worker.producer.refuse(changelog)  # the broker refuses what the first batch wrote ...
        worker.producer.release()
        second_ok = await later
        first_ok = not feed._in_flight  # both ended: nothing left in hand
        worker.producer.refused.clear()
        worker.producer.hold = False
        return first_ok, second_ok, consumer.made

    settled, ok, commits = asyncio.run(run())
    assert settled and not ok and commits == []  # neither batch committed ...
    assert marks(worker) == before  # ... nor marked: both are read again from where they began
    read_again_as_the_models_say(worker, events)


def test_the_batch_behind_a_refused_mark_writes_no_mark_of_its_own() -> None:
    """The first batch's records are acknowledged, its mark refused: the second one, applied and acknowledged
    meanwhile, must not mark a place past the first's records, which are read again."""
    worker = Harness()
    events = event_stream(6, CAMPAIGNS, 150)
    worker.publish(events)
    first, second = two_batches(worker)
    before = marks(worker)

    async def run() -> bool:
        feed, consumer = events_feed(worker), _Commits()
        worker.producer.hold = True
        assert await feed._start(consumer, first)
        first_records = len(worker.producer._queued)
        later = asyncio.ensure_future(feed._start(consumer, second))
        await _until(lambda: len(worker.producer._queued) > first_records)
        worker.producer.release(first_records)  # the first batch's records: acknowledged
        await _until(lambda: len(worker.producer._queued) > 0 and _holds_a_mark(worker))
        worker.producer.refuse(worker.tables.engagement.changelog_topic)  # its mark (and the rest): refused
        worker.producer.release()
        ok = await later
        worker.producer.refused.clear()
        worker.producer.hold = False
        return ok

    assert not asyncio.run(run())
    assert marks(worker) == before
    read_again_as_the_models_say(worker, events)


def test_a_batch_with_nothing_to_write_behind_a_refused_one_marks_nothing() -> None:
    """Its own commit has no write to lose, so only the order of batches stops its mark from passing the
    refused batch's records, which would then never be applied."""
    worker = Harness()
    events = event_stream(8, CAMPAIGNS, 150)
    worker.publish(events)
    first = worker.unread(worker.names.events, worker.events)
    poison = [FeedRecord(r.message._replace(offset=r.message.offset + 10_000), b"{") for r in first[-3:]]
    before = marks(worker)

    async def run() -> bool:
        feed, consumer = events_feed(worker), _Commits()
        worker.producer.hold = True
        assert await feed._start(consumer, first)
        later = asyncio.ensure_future(feed._start(consumer, poison))
        await asyncio.sleep(0.05)  # the second batch read and applied: nothing to write
        worker.producer.refuse(worker.tables.engagement.changelog_topic)
        worker.producer.release()  # the first batch's records: refused
        await asyncio.sleep(0.05)
        worker.producer.refused.clear()  # the broker answers again: whatever comes next is kept
        worker.producer.hold = False
        worker.producer.release()
        return await asyncio.wait_for(later, 5)

    assert not asyncio.run(run())
    assert worker.metrics.value("mailpulse_worker_undecodable_total", topic="events") == 3
    recovered = worker.restarted()  # what the broker holds
    assert marks(recovered) == before
    recovered.output.close()


def _holds_a_mark(worker: Harness) -> bool:
    """A mark record waits among the queued records."""
    return any(key.startswith(b'"o|') or key.startswith(b"o|") for _, _, key, _, _ in worker.producer._queued)


def test_two_batches_in_hand_mark_and_commit_in_read_order() -> None:
    worker = Harness()
    events = event_stream(7, CAMPAIGNS, 150)
    worker.publish(events)
    first, second = two_batches(worker)

    async def run() -> list[list[tuple[int, int]]]:
        feed, consumer = events_feed(worker), _Commits()
        assert await feed._start(consumer, first)
        assert await feed._start(consumer, second)
        await feed._settled()
        return consumer.made

    commits = [dict(made) for made in asyncio.run(run())]
    ends: dict[int, int] = {}
    for batch in (first, second):
        for record in batch:
            ends[record.message.partition] = record.message.offset + 1
    assert len(commits) == 2 and commits[-1] == {p: o for p, o in ends.items() if p in commits[-1]}
    assert {p: int(m) for p, m in marks(worker).items() if m is not None} == ends
    worker.output.close()


def test_a_batch_read_after_its_predecessor_failed_is_not_applied() -> None:
    handled: list[int] = []

    async def run() -> bool:
        refused = asyncio.Event()

        async def handle(feed: Any, records: list[FeedRecord]) -> dict[int, int]:
            handled.append(records[0].message.offset)
            feed.release()  # the next batch may be read ...
            await refused.wait()  # ... while this one waits for the broker, which refuses it
            raise OutputError("refused")

        worker = Harness()
        feed = events_feed(worker)
        feed.handle = handle
        consumer = _Commits()
        assert await feed._start(consumer, _records(0, 0, 1))
        refused.set()
        await asyncio.sleep(0.01)  # the first batch failed while the second was being read
        ok = await feed._start(consumer, _records(0, 2, 3))
        worker.output.close()
        return ok

    assert not asyncio.run(run())
    assert handled == [0]
