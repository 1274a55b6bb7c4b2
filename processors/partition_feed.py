"""A topic read beside faust's consumer, on the partitions faust gave this worker.

faust feeds every agent from one fetch loop, and that loop waits whenever one stream's buffer is
full. A campaign's backlog in the outbox (or a retry waiting for its time) then held back the
events topic behind it: an unsubscribe took seconds to reach the suppression table while a large
campaign was sending (`make bench`, sender suite). The sender reads the outbox and the retry topic
here instead, each with a librdkafka consumer of its own, so a backlog there never delays an event.
The events and the campaign partials are read here too: faust's per-record stream machinery cost
about as much as the suppression and engagement work itself (`make bench`, processors suite), so
faust runs no agent; it holds the tables.

The partitions follow faust's active assignment of a table changelog (every topic of the worker is
co-partitioned), as the :class:`FeedHost` tells it: a worker reads partition *p* only while it holds
partition *p* of the tables, and only once faust has recovered them. A rebalance waits for the batches
in hand.

Offsets are committed (group ``<app>-<name>``, manual assignment) only after a batch's handler
returned, so a crash re-reads what was not finished: at-least-once. A feed whose tables record how
far each partition got (``resume_from``) starts there instead, or at the beginning when there is no
mark: that mark is durable exactly when the batch's table writes are, which no separately committed
offset can promise (faust's was seen to pass records no batch had applied).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from processors.feed import FeedHost, FeedProgress, FeedRecord, Handler, PrecedingBatchFailed, ResumeFrom

log = logging.getLogger(__name__)


class PartitionFeed:
    def __init__(
        self,
        host: FeedHost,
        *,
        name: str,
        topic: str,
        bootstrap_servers: str,
        batch_size: int,
        handle: Handler,
        resume_from: ResumeFrom | None = None,
        depth: int = 1,
        progress: FeedProgress | None = None,
    ) -> None:
        """``depth`` batches may be handled at once: the next is read once the one before it calls
        :meth:`release` (or ends). Commits keep the order the batches were read in. ``progress`` is told
        what the feed reads and how far its batches got (:class:`processors.caught_up.CaughtUp`)."""
        self.host, self.name, self.topic = host, name, topic
        self.batch_size = batch_size
        self.handle = handle
        self.resume_from = resume_from
        self._progress = progress
        self.group_id = f"{host.group_prefix}-{name}"
        self._bootstrap = bootstrap_servers
        # Every librdkafka call on one thread of its own: consume() blocks, and the calls stay ordered.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"feed-{name}")
        self._consumer: Consumer | None = None
        self._offered: frozenset[int] = frozenset()  # assigned by faust; read once its tables are recovered
        self._wanted: frozenset[int] = frozenset()
        self._assigned: frozenset[int] | None = None  # read now; None: assign (again) before reading
        self._busy = asyncio.Lock()  # held while a batch is started; a rebalance waits for it, then for the rest
        self._resting: dict[int, asyncio.TimerHandle] = {}
        self._depth = depth
        # Batches being handled, oldest first: each task commits its batch and answers whether all went well.
        self._in_flight: collections.deque[asyncio.Task[bool]] = collections.deque()
        self._released: dict[asyncio.Task[Any], asyncio.Event] = {}
        # Each batch in hand's predecessor, for :meth:`preceding`.
        self._before: dict[asyncio.Task[Any], asyncio.Task[bool]] = {}
        # What :meth:`status` shows an operator: when each batch in hand began, when the feed last read,
        # and how many batches in a row failed.
        self._began: dict[asyncio.Task[bool], float] = {}
        self._last_read: float | None = None
        self._failures = 0

    def status(self) -> dict[str, Any]:
        """Where the feed stands, for an operator asking why a partition is not read (the worker's ``/feeds``)."""
        now = time.monotonic()
        began = [self._began[task] for task in self._in_flight if task in self._began]
        return {
            "topic": self.topic,
            "offered": sorted(self._offered),
            "wanted": sorted(self._wanted),
            "reads": None if self._assigned is None else sorted(self._assigned),
            "resting": sorted(self._resting),
            "batches_in_hand": len(self._in_flight),
            "oldest_batch_seconds": round(now - min(began), 3) if began else None,
            "last_read_seconds_ago": None if self._last_read is None else round(now - self._last_read, 3),
            "failed_batches_in_a_row": self._failures,
        }

    def connect(self) -> None:
        """Follow the host's rebalances and run the feed as a task of the host."""
        self.host.on_rebalance(self._on_revoked, self._on_assigned, self._on_rebalance_complete)
        self.host.task(self._run)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def _on_revoked(self) -> None:
        # The batches in hand finish (and commit) before faust moves the tables; nothing after them is read.
        async with self._busy:
            await self._settled()
            self._offered = self._wanted = frozenset()
            self._assigned = None
            if self._progress is not None:
                self._progress.assigned({})

    async def _on_assigned(self) -> None:
        self._offered = self.host.assigned()

    async def _on_rebalance_complete(self) -> None:
        self._wanted = self._offered

    async def _assign(self, consumer: Consumer, partitions: frozenset[int]) -> None:
        # Reading starts again from the tables' marks, else the committed offsets: whatever was fetched
        # and not handled is read again.
        tps = await self._start_offsets(consumer, partitions)
        if tps is None:
            return  # not assigned: the run loop tries again once the rebalance under way is done
        for handle in self._resting.values():
            handle.cancel()
        self._resting.clear()
        await self._call(consumer.assign, tps)
        # librdkafka keeps a partition's pause through assign (and unassign), measured against the broker:
        # a partition resting when the rebalance came would never be read again, its wake-up cancelled above.
        await self._call(consumer.resume, [TopicPartition(self.topic, p) for p in sorted(partitions)])
        self._assigned = partitions
        if self._progress is not None:
            self._progress.assigned({tp.partition: tp.offset if tp.offset >= 0 else None for tp in tps})
        starts = {tp.partition: "beginning" if tp.offset == OFFSET_BEGINNING else tp.offset for tp in tps}
        whose = "the tables' marks" if self.resume_from is not None else "the committed offsets"
        origin = f" from {starts} ({whose})" if starts else ""
        log.info("%s reads %s partitions %s%s", self.name, self.topic, sorted(partitions) or "none", origin)

    async def _start_offsets(self, consumer: Consumer, partitions: frozenset[int]) -> list[TopicPartition] | None:
        """Where each partition is read from; None if a rebalance began while the committed offsets were asked.

        The committed offsets are asked for here, not left to ``assign`` (OFFSET_INVALID): refused by a
        coordinator that had moved (NOT_COORDINATOR after a broker restart), librdkafka reported the error and
        never fetched those partitions; `make chaos` stalled on 2,462 unread retries, its feed reading nothing.
        """
        if self.resume_from is not None:
            return [TopicPartition(self.topic, p, self._start_offset(p)) for p in sorted(partitions)]
        asked = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        delay = 0.5
        while True:
            try:
                committed = await self._call(consumer.committed, asked, timeout=10)
                refused = [tp for tp in committed if tp.error is not None]
                if not refused:
                    # No commit yet: from the beginning, as auto.offset.reset=earliest says.
                    return [
                        TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                        for tp in committed
                    ]
                reason = str(refused[0].error)
            except KafkaException as exc:
                reason = str(exc)
            log.warning("%s: committed offsets of %s not known (%s); asking again", self.name, self.topic, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            if self.host.settling():
                return None

    def _start_offset(self, partition: int) -> int:
        if self.resume_from is None:
            return OFFSET_INVALID  # the committed offset
        mark = self.resume_from(partition)
        # No mark: nothing from this partition was ever durably applied (or the tables were deleted to be
        # rebuilt), so all of it is read, whatever offset the group committed.
        return OFFSET_BEGINNING if mark is None else mark

    @property
    def _partitions(self) -> frozenset[int]:
        return self._assigned or frozenset()

    def rest(self, partition: int, offset: int, seconds: float) -> None:
        """Read ``partition`` again from ``offset`` in ``seconds``, or when :meth:`wake` is called first (a
        handler's record is not due yet, or waits for something else to change)."""
        consumer = self._consumer
        if consumer is None or partition not in self._partitions:
            return
        # Through the feed's thread like every other librdkafka call: a resume queued there by an earlier
        # wake-up must not run after this pause, or the partition's records would be fetched (and dropped
        # as resting) and then never fetched again.
        self._pool.submit(_pause_at, consumer, TopicPartition(self.topic, partition, offset))
        previous = self._resting.pop(partition, None)
        if previous is not None:
            previous.cancel()
        self._resting[partition] = asyncio.get_running_loop().call_later(max(0.0, seconds), self._wake, partition)

    def _wake(self, partition: int) -> None:
        self._resting.pop(partition, None)
        consumer = self._consumer
        if consumer is not None and partition in self._partitions:
            # Through the feed's thread, in order with its other librdkafka calls.
            self._pool.submit(consumer.resume, [TopicPartition(self.topic, partition)])

    def wake(self) -> None:
        """Read every resting partition again now."""
        for partition, handle in list(self._resting.items()):
            handle.cancel()
            self._wake(partition)

    def release(self) -> None:
        """Called by a handler once the rest of its batch only waits (for SMTP answers, say): a feed of
        ``depth`` 2 then reads and starts the next batch meanwhile. Elsewhere it does nothing."""
        current = asyncio.current_task()
        released = self._released.get(current) if current is not None else None
        if released is not None:
            released.set()

    async def preceding(self) -> bool:
        """Wait for the batches read before the calling handler's; whether they were all handled and committed.

        A handler of a deeper feed asks before it makes anything lasting that would pass them (a mark of how
        far the tables got): once an earlier batch failed, its own results must not outlive it."""
        current = asyncio.current_task()
        before = self._before.get(current) if current is not None else None
        return before is None or await before

    async def _batch(self, consumer: Consumer, records: list[FeedRecord], before: asyncio.Task[bool] | None) -> bool:
        """Handle and commit one batch, after the batch before it committed; False if either failed
        (nothing of this one is committed then: it is read again)."""
        if before is not None and before.done() and (before.cancelled() or not before.result()):
            self.release()
            return False  # read after a batch that failed: it would apply on top of what that one left out
        try:
            done = await self.handle(self, records)
            if self._progress is not None:
                self._progress.applied(done)
        except PrecedingBatchFailed:
            return False  # the earlier batch logged its failure
        except Exception:
            log.exception("%s: batch failed; it is read again", self.name)
            return False
        finally:
            self.release()
        if before is not None and not await before:
            return False
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(done.items()) if p in self._partitions]
        if offsets:
            try:
                # With marks in the tables the commit only shows the group's lag: it need not hold up the next batch.
                await self._call(consumer.commit, offsets=offsets, asynchronous=self.resume_from is not None)
            except Exception:
                log.exception("%s: committing offsets failed; the batch is read again", self.name)
                return False
        return True

    async def _start(self, consumer: Consumer, records: list[FeedRecord]) -> bool:
        """Start handling ``records`` and return once the feed may read on; False if a batch failed."""
        before = self._in_flight[-1] if self._in_flight else None
        task = asyncio.create_task(self._batch(consumer, records, before))
        if before is not None:
            self._before[task] = before
        self._began[task] = time.monotonic()
        task.add_done_callback(self._ended)
        released = self._released[task] = asyncio.Event()
        self._in_flight.append(task)
        waiting = asyncio.ensure_future(released.wait())
        try:
            await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            del self._released[task]
        return await self._collected(self._depth - 1)

    def _ended(self, task: asyncio.Task[bool]) -> None:
        self._began.pop(task, None)
        self._before.pop(task, None)

    async def _collected(self, keep: int) -> bool:
        """Wait until at most ``keep`` batches are in hand, taking the results of those that ended; False
        if one failed (then every other one is waited for too: all of them are read again)."""
        while self._in_flight and (self._in_flight[0].done() or len(self._in_flight) > keep):
            if not await self._in_flight.popleft():
                await self._settled()
                return False
        return True

    async def _settled(self) -> None:
        """Every batch in hand ended (committed or failed)."""
        while self._in_flight:
            await self._in_flight.popleft()

    async def _run(self) -> None:
        consumer = self._consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # Batches are small; fetching far ahead only holds records that a rebalance re-reads.
                "queued.max.messages.kbytes": 8192,
            }
        )
        self._failures = 0
        try:
            while True:
                if self.host.settling() or not self._wanted:
                    await asyncio.sleep(0.05)
                    continue
                async with self._busy:
                    if self._wanted != self._assigned:
                        await self._settled()  # the batches in hand were read under the old assignment
                        await self._assign(consumer, self._wanted)
                messages = await self._call(consumer.consume, self.batch_size, 0.1)
                self._last_read = time.monotonic()
                async with self._busy:
                    records = self._usable(messages)
                    ok = await (self._start(consumer, records) if records else self._collected(self._depth))
                    if ok:
                        if records:
                            self._failures = 0
                        continue
                    self._failures += 1
                    log.warning(
                        "%s: %d failed batch(es) in a row; reading again from the last commit",
                        self.name,
                        self._failures,
                    )
                    self._assigned = None  # back to the marks or committed offsets: the batch is read again
                # A pause that grows while the failure lasts (the broker or the relay down), outside the lock
                # so a rebalance need not wait for it.
                await asyncio.sleep(min(30.0, 2.0 ** (self._failures - 1)))
        finally:
            for task in self._in_flight:
                task.cancel()
            self._consumer = None
            with contextlib.suppress(Exception):
                await self._call(consumer.close)
            self._pool.shutdown(wait=False)

    def _usable(self, messages: list[Message]) -> list[FeedRecord]:
        records = []
        # Fetched before a rebalance took the partition away: its new reader reads it again.
        readable = self._partitions - self._resting.keys()
        of = FeedRecord.of
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error on %s: %s", self.name, self.topic, error)
                continue
            if msg.partition() in readable:
                records.append(of(msg))
        return records


def _pause_at(consumer: Consumer, tp: TopicPartition) -> None:
    consumer.pause([tp])
    consumer.seek(tp)
