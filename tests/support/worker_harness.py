"""The worker's jobs over memory stores and an in-memory producer, for unit tests of their batch logic.

A :class:`Harness` is one worker holding every partition: its tables are
:class:`processors.store.DictStore` objects, everything it writes goes through a real
:class:`processors.output.Output` into a :class:`tests.support.memory_producer.MemoryProducer`, which
stands for the broker and outlives the worker. :meth:`Harness.restarted` is the worker after a crash:
a new one whose tables are rebuilt from the changelog records the broker acknowledged, as faust rebuilds
them, with nothing of the old one's pending writes.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.campaign_book import CampaignBook
from processors.caught_up import Rebalancing
from processors.event_tracking import EventTracker
from processors.faust_store import CAMPAIGN_TOTALS, ENGAGEMENT, SENT_LOG, SUPPRESSION, WorkerTables, changelog_topic
from processors.feed import FeedMessage, FeedRecord
from processors.marks import MarkedFeed
from processors.metrics import WorkerMetrics
from processors.output import Output
from processors.rollup import CampaignRollup
from processors.state_keys import EngagementKeys, RollupKeys
from processors.store import DictStore
from schemas.codec import encode
from schemas.events import AnyEvent
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.topics import Topics
from tests.support.memory_producer import MemoryProducer


@dataclass
class FeedCalls:
    """A feed as a handler sees it (:class:`processors.feed.FeedControl`), recording what it was asked."""

    released: int = 0
    rests: list[tuple[int, int, float]] = field(default_factory=list)

    def release(self) -> None:
        self.released += 1

    async def preceding(self) -> bool:
        return True  # one batch at a time

    def rest(self, partition: int, offset: int, seconds: float) -> None:
        self.rests.append((partition, offset, seconds))


class EventsApplied:
    """The events gate of a worker whose events are applied (``behind``: these partitions are not yet)."""

    def __init__(self, behind: set[int] | None = None) -> None:
        self.behind = behind or set()
        self.waits = 0
        self.rebalancing = False
        self._caught_up = asyncio.Event()

    def fresh(self, partition: int) -> bool:
        return partition not in self.behind

    def begin_by(self, partition: int) -> float:
        """A deadline telling the partition apart, so a test sees which one the sender handed over."""
        return float("-inf") if partition in self.behind else 1000.0 + partition

    async def wait(self, partition: int) -> None:
        if partition in self.behind:
            self.waits += 1
            await self._caught_up.wait()
            if self.rebalancing:
                raise Rebalancing(f"partition {partition} moves")

    def catch_up(self) -> None:
        self.behind.clear()
        self._caught_up.set()

    def rebalance(self) -> None:
        """The partitions move while hand-offs wait: they give up."""
        self.rebalancing = True
        self._caught_up.set()


class BookGate:
    """Campaign states from a book filled by the test (the worker's comes from the campaigns feed)."""

    def __init__(self, book: CampaignBook | None = None) -> None:
        self.book = book or CampaignBook()

    def reasons(self, campaign_id: str) -> list[str]:
        return self.book.reasons(campaign_id)

    async def ready(self) -> None:
        return None


def memory_tables(settings: Settings, producer: MemoryProducer | None = None) -> WorkerTables:
    """The worker's four tables in memory; rebuilt from ``producer``'s changelogs when it is given."""

    def table(name: str) -> Any:
        topic = changelog_topic(settings, name)
        if producer is None:
            return DictStore[str](name, topic)
        return DictStore[str].recovered(name, topic, producer.changelog(topic))

    return WorkerTables(table(SUPPRESSION), table(SENT_LOG), table(ENGAGEMENT), table(CAMPAIGN_TOTALS))


class Harness:
    def __init__(
        self, settings: Settings | None = None, producer: MemoryProducer | None = None, recover: bool = False
    ) -> None:
        self.settings = settings or Settings.from_env({"MAILPULSE_COMPLAINT_ALERT_MIN_DELIVERED": "50"})
        self.producer = producer or MemoryProducer(self.settings.topic_partitions)
        self.names = Topics.for_prefix(self.settings.topic_prefix)
        self.tables = memory_tables(self.settings, self.producer if recover else None)
        self.output = Output(self.settings, producer=self.producer)
        self.metrics = WorkerMetrics()
        self.tracker = EventTracker(self.tables.suppression, self.tables.engagement, self.settings, self.metrics)
        self.events = MarkedFeed(self.output, self.tables.engagement, EngagementKeys.mark, self.tracker.apply)
        self.rollup = CampaignRollup(self.tables.campaign_totals, self.settings, self.metrics)
        self.partials = MarkedFeed(self.output, self.tables.campaign_totals, RollupKeys.mark, self.rollup.apply)
        # Where each feed reads on, per partition (a new worker starts at the tables' marks).
        self.positions: dict[str, dict[int, int]] = defaultdict(dict)

    def restarted(self) -> Harness:
        """This worker after a SIGKILL: what Kafka acknowledged survives, nothing else."""
        self.output.close()
        return Harness(self.settings, self.producer, recover=True)

    def publish(self, events: Iterable[AnyEvent]) -> None:
        for event in events:
            key = recipient_key(event.recipient, event.campaign_id)
            self.producer.produce(self.names.events, key=key, value=encode(event))
        self.producer.release()

    def unread(self, topic: str, feed: MarkedFeed[Any] | None = None) -> list[FeedRecord]:
        """Every record of ``topic`` past where this worker reads from, partition by partition."""
        positions = self.positions[topic]
        records = []
        for record in self.producer.log[topic]:
            partition = record.partition()
            if partition not in positions:
                mark = feed.resume_from(partition) if feed is not None else None
                positions[partition] = mark or 0
            if record.offset() >= positions[partition]:
                records.append(FeedRecord(FeedMessage(topic, partition, record.offset()), record.value))
        return sorted(records, key=lambda r: (r.message.partition, r.message.offset))

    def run(self, topic: str, feed: MarkedFeed[Any], batch_size: int = 50, batches: int | None = None) -> int:
        """Handle the unread records of ``topic`` in batches (all, or the first ``batches``); how many batches."""
        records = self.unread(topic, feed)
        done = 0
        for start in range(0, len(records), batch_size):
            if batches is not None and done >= batches:
                break
            batch = records[start : start + batch_size]
            offsets = asyncio.run(feed.handle(FeedCalls(), batch))
            self.positions[topic].update(offsets)
            done += 1
        return done

    def drain(self, batch_size: int = 50) -> None:
        """Every event, then every campaign partial, applied."""
        self.run(self.names.events, self.events, batch_size)
        self.run(self.names.campaign_partials, self.partials, batch_size)

    def apply_without_marks(self, topic: str, feed: MarkedFeed[Any], apply: Any, batch_size: int = 50) -> None:
        """A batch applied and acknowledged, and the worker killed before its marks were written."""
        batch = self.unread(topic, feed)[:batch_size]

        async def run() -> None:
            tx = self.output.transaction()
            apply(tx, batch)
            await tx.commit()

        asyncio.run(run())

    def apply_and_die(self, topic: str, feed: MarkedFeed[Any], apply: Any, batch_size: int, reach: float) -> None:
        """A batch applied, and the worker killed while its records were in flight: the broker got the first
        ``reach`` share of them (records of one partition arrive in order), the rest never."""
        batch = self.unread(topic, feed)[:batch_size]
        self.producer.hold = True

        async def run() -> None:
            apply(self.output.transaction(), batch)

        asyncio.run(run())
        queued = len(self.producer._queued)
        self.producer.release(int(queued * reach))
        self.producer.lose()
        self.producer.hold = False
