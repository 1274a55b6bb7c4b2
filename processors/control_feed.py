"""The campaigns topic, read whole by every worker into its campaign book.

Every partition from the beginning, with no consumer group: each worker needs every campaign's state,
whichever partitions of the other topics it holds, and a restarted worker rebuilds its book from the
compacted topic. The sender's gate waits until the book holds everything the topic held when the worker
started (:meth:`ControlFeed.ready`): a worker must never mail a campaign paused before it came up.
A change of some campaign's state wakes the held feed, which then sends what a resume released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from processors.campaign_book import CampaignBook
from processors.metrics import WorkerMetrics
from schemas.codec import DecodeError, decode_event

log = logging.getLogger(__name__)

# How often a worker whose campaigns topic does not exist yet looks again (an upgrade before `mailpulse topics`).
MISSING_TOPIC_RETRY_SECONDS = 5.0


class ControlFeed:
    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        book: CampaignBook,
        metrics: WorkerMetrics,
    ) -> None:
        self.topic, self.book, self._metrics = topic, book, metrics
        self._bootstrap = bootstrap_servers
        self._listeners: list[Callable[[set[str]], object]] = []
        self._ready = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-campaigns")

    def on_change(self, listener: Callable[[set[str]], object]) -> None:
        """Call ``listener`` (on the event loop) with the campaigns whose state a batch of records changed."""
        self._listeners.append(listener)

    def reasons(self, campaign_id: str) -> list[str]:
        return self.book.reasons(campaign_id)

    async def ready(self) -> None:
        """Return once the book holds every campaign record the topic held when this worker started."""
        await self._ready.wait()

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))

    async def _targets(self, consumer: Consumer) -> dict[int, int] | None:
        """Each partition's end offset now; None while the topic does not exist."""
        metadata = await self._call(consumer.list_topics, self.topic, 10)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        targets = {}
        for partition in found.partitions:
            _, high = await self._call(consumer.get_watermark_offsets, TopicPartition(self.topic, partition), 10)
            targets[partition] = high
        return targets

    async def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                # Manual assignment, never committed: the id only keeps librdkafka content.
                "group.id": f"mailpulse-control-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # A pause must reach the gate at once: the broker answers a fetch as soon as a record comes,
                # and at most this long after when none does (few records ever come: the cost is nil).
                "fetch.wait.max.ms": 20,
            }
        )
        try:
            targets = await self._targets(consumer)
            while targets is None:
                log.warning("topic %s does not exist yet (run `mailpulse topics`): no campaign is paused", self.topic)
                self._ready.set()  # no record can exist: nothing is paused
                await asyncio.sleep(MISSING_TOPIC_RETRY_SECONDS)
                targets = await self._targets(consumer)
            assignment = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(targets)]
            await self._call(consumer.assign, assignment)
            positions = dict.fromkeys(targets, 0)
            self._check_ready(positions, targets)
            while True:
                messages = await self._call(consumer.consume, 500, 0.05)
                changed: set[str] = set()
                for msg in messages:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("campaigns feed: %s", msg.error())
                        continue
                    positions[msg.partition() or 0] = (msg.offset() or 0) + 1
                    try:
                        event = decode_event(msg.value() or b"")
                    except DecodeError as exc:
                        self._metrics.poison.labels("campaigns").inc()
                        log.warning("skipping undecodable campaign record: %s", exc)
                        continue
                    if self.book.apply(event):
                        changed.add(event.campaign_id)
                        log.info("campaign %s is %s now", event.campaign_id, self.book.state(event.campaign_id))
                if changed:
                    for listener in self._listeners:
                        listener(changed)
                self._check_ready(positions, targets)
        finally:
            with contextlib.suppress(Exception):
                await self._call(consumer.close)
            self._pool.shutdown(wait=False)

    def _check_ready(self, positions: dict[int, int], targets: dict[int, int]) -> None:
        if not self._ready.is_set() and all(positions[p] >= end for p, end in targets.items()):
            log.info("campaign book loaded: %d campaign(s)", len(self.book.all()))
            self._ready.set()
