"""The retry job: due requests back to the outbox, a partition whose next request is not due rests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from processors.feed import FeedMessage, FeedRecord
from processors.retries import RetryRelease
from schemas.codec import decode_send_request, encode
from schemas.events import utcnow
from tests.support.worker_harness import FeedCalls, Harness
from tests.unit.test_sender import request


def test_due_requests_go_back_to_the_outbox_and_a_partition_waits_behind_its_first_not_due() -> None:
    harness = Harness()
    now = utcnow()
    due = msgspec.structs.replace(request("due@example.org", attempt=2), not_before=now - timedelta(seconds=1))
    later = msgspec.structs.replace(request("later@example.org", attempt=2), not_before=now + timedelta(seconds=60))
    behind = msgspec.structs.replace(request("behind@example.org", attempt=3), not_before=now - timedelta(seconds=5))
    elsewhere = request("elsewhere@example.org", attempt=2)  # no time set: due at once
    topic = harness.names.retry
    batch = [
        FeedRecord(FeedMessage(topic, 0, 10), encode(due)),
        FeedRecord(FeedMessage(topic, 0, 11), encode(later)),
        FeedRecord(FeedMessage(topic, 0, 12), encode(behind)),  # keeps its place behind the one not due
        FeedRecord(FeedMessage(topic, 1, 3), b"garbage"),
        FeedRecord(FeedMessage(topic, 1, 4), encode(elsewhere)),
    ]
    feed = FeedCalls()
    done = asyncio.run(RetryRelease(harness.output, harness.settings, harness.metrics).handle(feed, batch))
    assert done == {0: 11, 1: 5}
    released = [decode_send_request(v).recipient for v in harness.producer.values(harness.names.outbox)]
    assert released == ["due@example.org", "elsewhere@example.org"]
    [(partition, offset, seconds)] = feed.rests
    assert (partition, offset) == (0, 11) and 58 < seconds <= 60
    assert harness.metrics.value("mailpulse_worker_undecodable_total", topic="retry") == 1
    harness.output.close()
