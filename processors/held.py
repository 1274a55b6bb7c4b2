"""The held feed's job: a paused campaign's send requests wait on the held topic until it is resumed or cancelled.

The sender puts a request there when its campaign is paused, at its gate or right before its hand-off. This
feed sends each one back to the outbox once its campaign is no longer paused (a cancelled campaign's then
become ``send.skipped`` at the gate). While the request at the head of a partition still waits, the
partition rests until some campaign's state changes (the campaigns feed wakes it) or a refresh is due.

Requests of several campaigns share a partition. On a wake, a request of a campaign still paused that was
held before the wake goes to the back of the partition, so the requests of a campaign resumed meanwhile,
behind it, are not stuck; the pass stops at the first request held after the wake (those are new, or
moved back already). A request held for longer than :data:`REFRESH_SECONDS` is written again too, so the
topic's retention never drops one, however long its campaign stays paused.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from processors.campaign_book import CAMPAIGN_PAUSED
from processors.feed import FeedControl, FeedRecord, send_requests
from processors.metrics import WorkerMetrics
from processors.output import Output
from schemas.codec import encode
from schemas.settings import Settings
from schemas.topics import Topics

REFRESH_SECONDS = 6 * 3600.0


class CampaignGate(Protocol):
    """What the sender and the held feed ask of the campaigns' states (:class:`processors.control_feed.ControlFeed`)."""

    def reasons(self, campaign_id: str) -> list[str]: ...

    def ready(self) -> Awaitable[None]: ...


class Wakeable(Protocol):
    def wake(self) -> None: ...


class HeldRelease:
    def __init__(
        self,
        output: Output,
        gate: CampaignGate,
        settings: Settings,
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._output, self._gate, self._metrics, self._clock = output, gate, metrics, clock
        topics = Topics.for_prefix(settings.topic_prefix)
        self._outbox, self._held = topics.outbox, topics.held
        self._woken_at = 0.0

    def wake(self, feed: Wakeable) -> None:
        """Some campaign's state changed: read ``feed`` (the held topic's) again now; requests held before now
        of campaigns still paused move to the back."""
        self._woken_at = self._clock()
        feed.wake()

    async def handle(self, feed: FeedControl, records: list[FeedRecord]) -> dict[int, int]:
        await self._gate.ready()
        done: dict[int, int] = {}
        resting: set[int] = set()
        now = datetime.fromtimestamp(self._clock(), UTC)  # one clock for every age this job compares
        tx = self._output.transaction()
        for partition, offset, request in send_requests(records, "held", self._metrics, done, resting):
            if self._gate.reasons(request.campaign_id) == [CAMPAIGN_PAUSED]:
                held_at = (request.held_at or now).timestamp()
                if held_at < self._woken_at or now.timestamp() - held_at > REFRESH_SECONDS:
                    moved = msgspec.structs.replace(request, held_at=now)
                    tx.produce(self._held, key=request.recipient.encode(), value=encode(moved))
                    self._metrics.held.labels("requeued").inc()
                    done[partition] = offset + 1
                    continue
                feed.rest(partition, offset, REFRESH_SECONDS)
                resting.add(partition)
                continue
            released = msgspec.structs.replace(request, held_at=None)
            tx.produce(self._outbox, key=request.recipient.encode(), value=encode(released))
            self._metrics.held.labels("released").inc()
            done[partition] = offset + 1
        await tx.commit()
        return done
