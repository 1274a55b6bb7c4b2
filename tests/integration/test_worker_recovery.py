"""Worker crash recovery and scale-out on the real broker, each on its own topic prefix.

The workers here are extra ``mailpulse worker`` processes of an isolated app (own topics, own
consumer group, own data dir); the session stack keeps running beside them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from mailpulse.topics_admin import ensure_topics
from processors.faust_store import SUPPRESSION, changelog_topic
from schemas.events import AnyEvent
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.helpers import publish_events, unique, wait_until
from tests.support.models import event_stream, report_model, suppression_model
from tests.support.worker_process import Worker

CAMPAIGNS = ["launch", "followup", "digest"]


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Any]]:
    """An app of its own on the session broker; yields its settings and a worker factory."""
    prefix = unique("iso")
    base = {
        **os.environ,
        "MAILPULSE_TOPIC_PREFIX": prefix,
        "MAILPULSE_KAFKA_BOOTSTRAP": stack.bootstrap_servers,
        "MAILPULSE_TABLE_STORE": "rocksdb://",
        "MAILPULSE_LOG_FORMAT": "text",
        "MAILPULSE_WORKER_SESSION_TIMEOUT_SECONDS": "6",
    }
    settings = Settings.from_env(base)
    ensure_topics(settings)
    workers: list[Worker] = []

    def worker(name: str, port: int) -> Worker:
        env = {**base, "MAILPULSE_VAR_DIR": str(tmp_path / name), "MAILPULSE_WORKER_WEB_PORT": str(port)}
        started = Worker(env, name).start()
        workers.append(started)
        return started

    yield settings, worker
    for w in workers:
        w.stop()


def publish_slowly(settings: Settings, events: list[AnyEvent], per_second: int) -> threading.Thread:
    def run() -> None:
        chunk = max(1, per_second // 10)
        for start in range(0, len(events), chunk):
            publish_events(settings, events[start : start + chunk])
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def assert_state_matches_the_model(settings: Settings, worker: Worker, events: list[AnyEvent]) -> None:
    def stats_of(campaign: str) -> Any:
        answer = worker.get(f"/stats/{campaign}")
        return answer.json() if answer is not None and answer.status_code == 200 else None

    for campaign in CAMPAIGNS:
        expected = report_model(events, campaign)
        wait_until(lambda c=campaign, e=expected: stats_of(c) == e, timeout=90, what=f"stats of {campaign}")
    for address, reasons in suppression_model(events, settings).items():
        answer = worker.get(f"/suppression/{address}")
        assert answer is not None and answer.status_code == 200
        assert answer.json()["reasons"] == reasons, address


def test_worker_killed_mid_stream_recovers_tables_equal_to_the_model(isolated: tuple[Settings, Any]) -> None:
    settings, worker = isolated
    events = event_stream(21, CAMPAIGNS, 700, domain="crash.example")
    first = worker("w1", 16171)
    wait_until(first.ready, timeout=90, what="worker ready")
    publisher = publish_slowly(settings, events, per_second=2000)
    wait_until(lambda: first.events_read() > len(events) / 4, timeout=60, what="a quarter of the stream read")
    read_before_kill = first.events_read()
    first.kill()  # SIGKILL: no commit, no flush, no goodbye
    assert read_before_kill < len(events), "the worker finished before the kill: not a mid-stream crash"
    restarted = worker("w1", 16171)
    wait_until(restarted.ready, timeout=90, what="worker ready after SIGKILL")
    publisher.join(60)
    assert_state_matches_the_model(settings, restarted, events)


def commit_past_everything(settings: Settings) -> None:
    """Commit the worker's events offsets at the end of each partition, as if it had read it all: in the
    group of its events feed and in faust's own group (which read the topic before the feed did)."""
    names = Topics.for_prefix(settings.topic_prefix)
    for group in (f"{names.processors_app}-events", names.processors_app):
        commit_group_at_the_end(settings, group)


def commit_group_at_the_end(settings: Settings, group: str) -> None:
    names = Topics.for_prefix(settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    try:
        partitions = consumer.list_topics(names.events, timeout=10).topics[names.events].partitions
        ends = [
            TopicPartition(names.events, p, consumer.get_watermark_offsets(TopicPartition(names.events, p))[1])
            for p in partitions
        ]

        def commit() -> bool:
            try:  # refused while the stopped worker's membership lingers
                consumer.commit(offsets=ends, asynchronous=False)
                return True
            except Exception:
                return False

        wait_until(commit, timeout=30, what="committing the group's offsets")
    finally:
        consumer.close()


@pytest.mark.parametrize("more_after_restart", [True, False], ids=["hole-mid-stream", "hole-at-the-end"])
def test_a_worker_resumed_past_unapplied_events_applies_them(
    isolated: tuple[Settings, Any], more_after_restart: bool
) -> None:
    """A committed offset may pass records no batch applied; the worker goes on from the tables' own
    marks instead, so it applies them, whether more events follow the restart or none do."""
    settings, worker = isolated
    events = event_stream(23, CAMPAIGNS, 300, domain="hole.example")
    third = len(events) // 3
    applied, skipped, later = events[:third], events[third : 2 * third], events[2 * third :]
    first = worker("w1", 16174)
    wait_until(first.ready, timeout=90, what="worker ready")
    publish_events(settings, applied)
    wait_until(lambda: first.events_read() >= len(applied), timeout=60, what="the first events applied")
    first.stop()
    publish_events(settings, skipped)
    commit_past_everything(settings)
    restarted = worker("w1", 16174)
    wait_until(restarted.ready, timeout=90, what="worker ready after the restart")
    if more_after_restart:
        publish_events(settings, later)
        assert_state_matches_the_model(settings, restarted, events)
    else:
        assert_state_matches_the_model(settings, restarted, events[: 2 * third])


def test_a_second_worker_takes_over_partitions_and_totals_stay_right(isolated: tuple[Settings, Any]) -> None:
    settings, worker = isolated
    events = event_stream(22, CAMPAIGNS, 700, domain="scale.example")
    a = worker("wa", 16172)
    wait_until(a.ready, timeout=90, what="first worker ready")
    half = len(events) // 2
    publish_events(settings, events[:half])
    wait_until(lambda: a.events_read() >= half / 2, timeout=60, what="the first worker reading")
    b = worker("wb", 16173)
    wait_until(lambda: a.ready() and b.ready(), timeout=120, what="both workers sharing the partitions")
    publish_events(settings, events[half:])
    # Each worker answers for every campaign and address (lookups go to the owner of the key).
    assert_state_matches_the_model(settings, a, events)
    assert_state_matches_the_model(settings, b, events)
    shares = [int(w.get("/healthz").json()["partitions"]) for w in (a, b)]
    assert all(share > 0 for share in shares)  # both really hold partitions


def _limit_record_size(settings: Settings, topic: str, max_bytes: int | None) -> None:
    """Make the broker refuse every record of ``topic`` (MESSAGE_TOO_LARGE), or take them again (None)."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    entry = (
        ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
        if max_bytes is not None
        else ConfigEntry("max.message.bytes", "", incremental_operation=AlterConfigOpType.DELETE)
    )
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _audited(settings: Settings, address: str) -> list[Any]:
    from schemas.codec import decode_suppression_change

    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": unique("audit"), "auto.offset.reset": "earliest"}
    )
    topic = Topics.for_prefix(settings.topic_prefix).suppression
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    found, deadline = [], time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=0.5):
            if message.error() is None and message.key() == address.encode():
                found.append(decode_suppression_change(message.value() or b""))
    consumer.close()
    return found


@pytest.mark.parametrize("refusing", ["suppression changelog", "audit topic"])
def test_a_suppression_record_kafka_refused_is_applied_and_audited_after_a_restart(
    isolated: tuple[Settings, Any], refusing: str
) -> None:
    """Issue 20 item 4: the events mark was acknowledged beside a refused suppression record, so a
    restarted worker resumed past the unsubscribe (never applied), or found the change in its state
    and never made the audit record again."""
    from datetime import UTC, datetime

    from schemas.events import Unsubscribe, UnsubscribeScope, new_event_id

    settings, worker = isolated
    names = Topics.for_prefix(settings.topic_prefix)
    topic = changelog_topic(settings, SUPPRESSION) if refusing == "suppression changelog" else names.suppression
    address = f"{unique('refused')}@example.org"
    first = worker("w1", 16175)
    wait_until(first.ready, timeout=90, what="worker ready")
    _limit_record_size(settings, topic, 64)
    try:
        event = Unsubscribe(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            campaign_id="launch",
            message_id="m-refused",
            recipient=address,
            list_id="news",
            scope=UnsubscribeScope.ALL,
        )
        publish_events(settings, [event])
        # Applied, refused by the broker, read again and refused again: the worker is stuck on it.
        wait_until(lambda: first.events_read() >= 2, timeout=60, what="the batch applied and refused")
        time.sleep(1.0)
        first.kill()
    finally:
        _limit_record_size(settings, topic, None)
    restarted = worker("w1", 16175)
    wait_until(restarted.ready, timeout=90, what="worker ready after the restart")

    def suppressed() -> bool:
        answer = restarted.get(f"/suppression/{address}")
        return answer is not None and answer.status_code == 200 and answer.json()["reasons"] == ["unsubscribed"]

    wait_until(suppressed, timeout=60, what="the unsubscribe applied after the restart")
    changes = wait_until(lambda: _audited(settings, address), timeout=30, what="its audit record")
    assert any(change.suppressed and change.caused_by == event.event_id for change in changes)
