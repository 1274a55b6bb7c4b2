"""The retry feed's job: each deferred or rate-limited send request back to the outbox once it is due.

A partition whose next request is not due rests until it is (the feed pauses it and reads it again from
that offset), so later requests of that partition wait behind it: retries of one recipient keep their
order, and a due request is released at most a batch's reading late. A request released twice (a crash
before the offsets were committed) is gated by the sender's sent-log like any redelivery.
"""

from __future__ import annotations

from processors.feed import FeedControl, FeedRecord, send_requests
from processors.metrics import WorkerMetrics
from processors.output import Output
from schemas.codec import encode
from schemas.events import utcnow
from schemas.settings import Settings
from schemas.topics import Topics


class RetryRelease:
    def __init__(self, output: Output, settings: Settings, metrics: WorkerMetrics) -> None:
        self._output, self._metrics = output, metrics
        self._outbox = Topics.for_prefix(settings.topic_prefix).outbox

    async def handle(self, feed: FeedControl, records: list[FeedRecord]) -> dict[int, int]:
        done: dict[int, int] = {}
        resting: set[int] = set()
        now = utcnow()
        tx = self._output.transaction()
        for partition, offset, request in send_requests(records, "retry", self._metrics, done, resting):
            if request.not_before is not None and request.not_before > now:
                feed.rest(partition, offset, (request.not_before - now).total_seconds())
                resting.add(partition)
                continue
            tx.produce(self._outbox, key=request.recipient.encode(), value=encode(request))
            done[partition] = offset + 1
        await tx.commit()
        return done
