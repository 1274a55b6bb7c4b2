"""Whether the events feed has applied, per partition, everything the edges had acknowledged a moment ago.

An unsubscribe acknowledged by an edge is in the events topic below its partition's high watermark
(``acks=all``: the leader answers once the record is in sync). The sender hands a message off only while its
partition is *caught up*: the events applied up to a high watermark read less than :data:`CAUGHT_UP_SECONDS`
ago. The suppression check right before that hand-off then sees every unsubscribe acknowledged before the
watermark was read, and the mail leaves within a second of any later one: the delivery process begins its
transaction only until :data:`BEGIN_WITHIN_SECONDS` after that watermark was read (:meth:`CaughtUp.begin_by`),
and gives a message that waited longer back to be checked again. Nothing else bounded that wait when the
worker's loop or the delivery process is starved of CPU (the chaos run in ``make test`` once saw a mail
1.6 s after an acknowledged unsubscribe, a worker killed and restarted beside it).

Without it the sender went on mailing whenever the events feed fell behind while the outbox did not: a
worker that had just taken partitions over (it resumes the events from its tables' marks and reads their
tail while the outbox's first batch is already gated), or an events leader paused while the outbox's leader
answered. ``make chaos`` saw mails 1.3 to 2 s after an acknowledged unsubscribe both ways. Now the sends of
that partition wait instead: for the tail to be read, or for a new leader.

The high watermarks come from a probe of the partition's leader (a ListOffsets request per partition, every
:data:`PROBE_SECONDS`), not from the feed's fetch responses, whose age is unknown: a fetch stuck on a
paused broker would leave the last answer looking current.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger(__name__)

# The reason a hand-off is put back: its partition's events are not known to be applied yet. It waits.
EVENTS_BEHIND = "events not caught up"
# How old the watermark a partition was caught up to may be. With the delivery process's window (some
# 130 ms of sending) a mail leaves well within a second of an unsubscribe acknowledged after it.
CAUGHT_UP_SECONDS = 0.5
# How long after the watermark a hand-off's check was caught up to its SMTP transaction may still begin: the
# rest of the second is for the transaction and the relay. The clock is time.monotonic, which is the
# machine's (CLOCK_MONOTONIC) and so the same in the delivery process.
BEGIN_WITHIN_SECONDS = 0.8
PROBE_SECONDS = 0.1
# A probe not answered by then is dropped (a paused or dead leader); the next one asks again.
PROBE_TIMEOUT_SECONDS = 2.0
# A partition behind this long is logged (again every as long).
BEHIND_TOLD_SECONDS = 5.0
# Probes kept per partition until the events feed applies past their watermark.
KEPT_PROBES = 32


class Rebalancing(RuntimeError):
    """The partitions are moving: a hand-off waiting for its events gives up; its batch is read again."""


class Probe(NamedTuple):
    asked_at: float  # the clock when the question went out: the answer is at least as new
    low: int
    high: int


class Watermarks(Protocol):
    """Asks a partition's leader for its log's first and next offsets (:class:`KafkaWatermarks`)."""

    def ask(self, partition: int, timeout: float) -> Future[tuple[int, int]]: ...

    def refresh(self) -> None:
        """Learn the partitions' leaders again (blocking): an answer failed, the leader may have moved."""

    def close(self) -> None: ...


class CaughtUp:
    """Told by the events feed (:meth:`assigned`, :meth:`applied`), asked by the sender (:meth:`fresh`,
    :meth:`wait`)."""

    def __init__(
        self,
        watermarks: Watermarks,
        clock: Callable[[], float] = time.monotonic,
        on_behind: Callable[[int], None] | None = None,
        rebalancing: Callable[[], bool] = lambda: False,
    ) -> None:
        """``on_behind(partition)`` is called when a caught-up partition falls behind: what was handed over
        from it and has not gone out yet is to be checked again (:meth:`processors.courier.Courier.recheck`).
        While ``rebalancing()``, :meth:`wait` gives up (:class:`Rebalancing`)."""
        self._watermarks, self._clock, self._rebalancing = watermarks, clock, rebalancing
        self._on_behind = on_behind or (lambda partition: None)
        self._were_fresh: set[int] = set()
        # Next offset applied per partition; None: read from the beginning and nothing applied yet.
        self._applied: dict[int, int | None] = {}
        self._probes: dict[int, collections.deque[Probe]] = {}
        self._caught_up_at: dict[int, float] = {}
        self._asking: set[int] = set()
        self._refreshing = False
        self._told: dict[int, float] = {}
        self._changed = asyncio.Event()

    # The events feed's side.
    def assigned(self, starts: dict[int, int | None]) -> None:
        """The feed reads these partitions now, each from this offset (None: the beginning)."""
        self._applied = dict(starts)
        for table in (self._probes, self._caught_up_at):
            for partition in [p for p in table if p not in starts]:
                del table[partition]

    def applied(self, done: dict[int, int]) -> None:
        """A batch was applied: per partition, the next offset to apply."""
        for partition, offset in done.items():
            if partition in self._applied:
                self._applied[partition] = offset
                self._settle(partition)

    # The sender's side.
    def fresh(self, partition: int) -> bool:
        at = self._caught_up_at.get(partition)
        return at is not None and self._clock() - at <= CAUGHT_UP_SECONDS

    def begin_by(self, partition: int) -> float:
        """On the clock, the latest moment a message checked now may begin its transaction: after that its
        check may have missed an unsubscribe acknowledged more than a second before the message goes out."""
        return self._caught_up_at.get(partition, float("-inf")) + BEGIN_WITHIN_SECONDS

    async def wait(self, partition: int) -> None:
        """Until ``partition`` is caught up. A rebalance waits for the sender's batches in hand, and the events
        feed may be revoked first, so a hand-off waiting here would hold the rebalance forever: it gives up
        instead (the sender requeues its message for whoever gets the partition)."""
        while not self.fresh(partition):
            if self._rebalancing():
                raise Rebalancing(f"a rebalance began while partition {partition}'s hand-offs waited")
            changed = self._changed
            if changed.is_set():
                self._changed = changed = asyncio.Event()
            # The probe's answers and the feed's batches set it; the timeout notices a partition given up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), PROBE_SECONDS)

    # The probe.
    async def run(self) -> None:
        try:
            while True:
                self.probe()
                self.notice_behind()
                await asyncio.sleep(PROBE_SECONDS)
        finally:
            self._watermarks.close()

    def notice_behind(self) -> None:
        fresh = {partition for partition in self._applied if self.fresh(partition)}
        for partition in sorted(self._were_fresh - fresh):
            if partition in self._applied:
                self._on_behind(partition)
        self._were_fresh = fresh
        now = self._clock()
        for partition in sorted(set(self._applied) - fresh):
            since = self._caught_up_at.get(partition)
            quiet = self._told.get(partition, float("-inf"))
            if (since is None or now - since > BEHIND_TOLD_SECONDS) and now - quiet > BEHIND_TOLD_SECONDS:
                self._told[partition] = now
                probes = self._probes.get(partition)
                newest = (
                    f"watermark {probes[-1].high} read {now - probes[-1].asked_at:.1f} s ago"
                    if probes
                    else "no watermark answered"
                )
                log.warning(
                    "events partition %d not caught up (%s): its sends wait; applied to %s, %s",
                    partition,
                    "never" if since is None else f"for {now - since:.1f} s",
                    self._applied.get(partition),
                    newest,
                )

    def probe(self) -> None:
        """Ask each partition's leader for its watermarks, unless a question to it is still unanswered."""
        loop = asyncio.get_running_loop()
        for partition in sorted(set(self._applied) - self._asking):
            asked_at = self._clock()
            try:
                answer = self._watermarks.ask(partition, PROBE_TIMEOUT_SECONDS)
            except Exception as exc:  # the client refused the call itself; asked again next time
                log.warning("events partition %d: watermark probe failed: %s", partition, exc)
                continue
            self._asking.add(partition)

            answer.add_done_callback(functools.partial(self._came, loop, partition, asked_at))

    def _came(self, loop: asyncio.AbstractEventLoop, partition: int, asked_at: float, answer: Future[Any]) -> None:
        loop.call_soon_threadsafe(self._answered, partition, asked_at, answer)

    def _answered(self, partition: int, asked_at: float, answer: Future[tuple[int, int]]) -> None:
        self._asking.discard(partition)
        try:
            low, high = answer.result()
        except Exception as exc:  # a leader down or moving: this partition's sends wait for the next answer
            log.debug("events partition %d: no watermarks: %s", partition, exc)
            if not self._refreshing:
                self._refreshing = True
                refreshed = asyncio.get_running_loop().run_in_executor(None, self._watermarks.refresh)
                refreshed.add_done_callback(self._refreshed)
            return
        if partition not in self._applied:
            return
        probes = self._probes.setdefault(partition, collections.deque(maxlen=KEPT_PROBES))
        probes.append(Probe(asked_at, low, high))
        self._settle(partition)

    def _refreshed(self, done: asyncio.Future[None]) -> None:
        self._refreshing = False
        if not done.cancelled() and done.exception() is not None:
            log.debug("events leaders not refreshed: %s", done.exception())

    def _settle(self, partition: int) -> None:
        """Take the newest probe whose watermark the applied offset has reached."""
        probes = self._probes.get(partition)
        if not probes:
            return
        applied = self._applied.get(partition)
        reached = [p for p in probes if (p.high <= p.low if applied is None else applied >= p.high)]
        if not reached:
            return
        newest = max(p.asked_at for p in reached)
        self._probes[partition] = collections.deque((p for p in probes if p.asked_at > newest), maxlen=KEPT_PROBES)
        if newest > self._caught_up_at.get(partition, float("-inf")):
            self._caught_up_at[partition] = newest
            self._changed.set()


class KafkaWatermarks:
    """The events topic's watermarks from each partition's leader, through a consumer of its own that never
    joins a group: its questions follow a moved leader as any consumer's fetches do. One thread a partition,
    so a paused leader delays only its own partitions' answers."""

    def __init__(self, topic: str, bootstrap_servers: str, partitions: int) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"{topic}-watermarks",
                "enable.auto.commit": False,
                # Leaders learned again every second, and at once after a failed answer (refresh).
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, partitions), thread_name_prefix="watermarks")

    def ask(self, partition: int, timeout: float) -> Future[tuple[int, int]]:
        return self._pool.submit(self._ask, partition, timeout)

    def _ask(self, partition: int, timeout: float) -> tuple[int, int]:
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=timeout, cached=False
        )
        if low < 0 or high < 0:  # no answer from a leader: never taken for an empty partition
            raise LookupError(f"no watermarks for partition {partition} ({low}, {high})")
        return low, high

    def refresh(self) -> None:
        self._consumer.list_topics(self._topic, timeout=PROBE_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._consumer.close()
