"""A sender killed with SIGKILL mid-campaign loses no send request; duplicates stay within what was in flight
(whatever the batch size) and are counted."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailpulse.topics_admin import ensure_topics
from processors.courier import QUEUED_PER_CONNECTION
from schemas.events import SendRequest, message_id_for, utcnow
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.helpers import maildir_messages, unique, wait_until
from tests.support.worker_process import Worker

AUDIENCE = 600


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    base = {
        **os.environ,
        "MAILPULSE_TOPIC_PREFIX": unique("sendcrash"),
        "MAILPULSE_KAFKA_BOOTSTRAP": stack.bootstrap_servers,
        "MAILPULSE_LOG_FORMAT": "text",
        "MAILPULSE_WORKER_SESSION_TIMEOUT_SECONDS": "6",
        "MAILPULSE_SEND_BATCH_SIZE": "50",
        # Paced sends keep each batch in flight (its requests taken, some mailed) for ~200 ms, against a
        # few ms between batches: the kill lands inside a batch, which the restart must then re-read.
        "MAILPULSE_DOMAIN_RATE_LIMITS": "*=250",
        "MAILPULSE_WORKER_WEB_PORT": "16181",
        "MAILPULSE_VAR_DIR": str(tmp_path / "worker"),
    }
    settings = Settings.from_env(base)
    ensure_topics(settings)
    yield settings, base


def publish_requests(settings: Settings, campaign: str, recipients: list[str]) -> None:
    from confluent_kafka import Producer

    from schemas.codec import encode

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    outbox = Topics.for_prefix(settings.topic_prefix).outbox
    for recipient in recipients:
        request = SendRequest(
            message_id=message_id_for(campaign, recipient),
            campaign_id=campaign,
            recipient=recipient,
            list_id="news",
            from_address="News <news@example.com>",
            subject="Crash test",
            html="<p>hello</p>",
            text="hello",
            enqueued_at=utcnow(),
        )
        producer.produce(outbox, key=recipient.encode(), value=encode(request))
    assert producer.flush(30) == 0


def restart_until_every_mail(
    stack: Settings, env: dict[str, str], campaign: str, audience: int
) -> tuple[Counter[str], float, float, httpx.Response | None]:
    """A new worker after the kill, run until every recipient got mail: mail per recipient, the requests it
    counted as possible duplicates and as already sent, and its metrics."""
    second = Worker(env, "sender").start()
    try:
        wait_until(second.ready, timeout=90, what="worker ready after SIGKILL")

        def mailed() -> Counter[str]:
            got: Any = Counter(m["Delivered-To"].lower() for m in maildir_messages(stack, campaign=campaign))
            return got  # type: ignore[no-any-return]

        counts = wait_until(lambda: (c := mailed()) and len(c) == audience and c, timeout=120, what="every mail")
        return counts, second.sends("possible_duplicate"), second.sends("duplicate"), second.get("/metrics")
    finally:
        second.stop()


def test_sender_killed_mid_campaign_loses_nothing_and_counts_duplicates(
    stack: Settings, isolated: tuple[Settings, dict[str, str]]
) -> None:
    settings, env = isolated
    campaign = unique("crash")
    recipients = [f"crash{i}-{campaign}@example.org" for i in range(AUDIENCE)]
    publish_requests(settings, campaign, recipients)
    first = Worker(env, "sender").start()
    try:
        wait_until(first.ready, timeout=90, what="worker ready")
        wait_until(lambda: first.sends("sent") >= AUDIENCE / 5, timeout=60, interval=0.02, what="sending under way")
        sent_before = first.sends("sent")
        # Paced sends keep a batch in flight for ~200 ms: 0.1 s later the kill lands inside one.
        time.sleep(0.1)
        first.kill()
    finally:
        first.stop()
    assert sent_before < AUDIENCE, "the campaign finished before the kill: not a mid-campaign crash"
    counts, counted, skipped_as_sent, exposition = restart_until_every_mail(stack, env, campaign, AUDIENCE)
    duplicates = sum(n - 1 for n in counts.values())
    assert set(counts) == set(recipients)  # nothing lost
    # Every real duplicate was counted as possible, and the possible ones are at most the two batches the
    # sender holds (the next one is gated while this one's last messages go out): under load about 70
    # pending marks were found and up to 57 of them had been mailed, with batches of 50.
    assert duplicates <= counted <= 2 * int(settings.send_batch_size)
    assert counted + skipped_as_sent > 0  # the restart really re-read requests the first worker had taken
    # The new worker's delivery process: nothing left in it, and it never died.
    assert exposition is not None
    assert "\nmailpulse_worker_delivery_in_flight 0.0\n" in exposition.text
    assert "\nmailpulse_worker_delivery_process_exits_total 0.0\n" in exposition.text


def test_a_crash_inside_a_large_batch_mails_twice_at_most_what_was_in_flight(
    stack: Settings, isolated: tuple[Settings, dict[str, str]]
) -> None:
    settings, env = isolated
    audience = 3_000
    # Unpaced (a paced batch sends only what its rate allows within a second and hands the rest to the retry
    # topic), and large: the kill lands deep inside a batch.
    env = {**env, "MAILPULSE_SEND_BATCH_SIZE": "5000", "MAILPULSE_DOMAIN_RATE_LIMITS": ""}
    campaign = unique("bigcrash")
    recipients = [f"big{i}-{campaign}@example.org" for i in range(audience)]
    arrived = stack.var_dir / "maildir" / "new"
    before = len(os.listdir(arrived))
    publish_requests(settings, campaign, recipients)
    first = Worker(env, "sender").start()
    try:
        wait_until(first.ready, timeout=90, what="worker ready")
        # Counted at the relay, whatever the worker has recorded so far.
        mailed_so_far = lambda: len(os.listdir(arrived)) - before  # noqa: E731
        wait_until(lambda: mailed_so_far() >= audience * 5 / 6, timeout=60, interval=0.01, what="most mailed")
        first.kill()
    finally:
        first.stop()
    counts, counted, skipped_as_sent, _ = restart_until_every_mail(stack, env, campaign, audience)
    duplicates = sum(n - 1 for n in counts.values())
    assert set(counts) == set(recipients)
    # Each answer's sent mark goes to Kafka as it comes, not when the batch ends: the restart skips what was
    # answered before the kill, and only the messages in the delivery process (and those answered in the
    # last milliseconds, their marks not yet acknowledged) can have gone out twice. With marks written at
    # the batch's end, everything the batch had mailed went out again.
    assert duplicates <= 2 * settings.smtp_connections * QUEUED_PER_CONNECTION
    assert duplicates <= counted
    assert counted + skipped_as_sent > 0  # the restart really re-read requests the first worker had taken
