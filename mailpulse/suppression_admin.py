"""`mailpulse suppression add|remove|check|export`.

Add and remove are events on the events topic like any unsubscribe: audited in ClickHouse,
replayed with everything else, applied by the worker in order with the recipient's other events.
Export reads the compacted suppression topic, the latest state of every address, so it works
whether or not a worker runs.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from email_validator import EmailNotValidError, validate_email

from mailpulse.errors import CliError
from mailpulse.processes import port_open
from mailpulse.progress import Progress
from mailpulse.queries import suppression_check
from schemas.codec import DecodeError, decode_suppression_change, encode
from schemas.events import SuppressionAdded, SuppressionChange, SuppressionRemoved, new_event_id, utcnow
from schemas.keys import normalize_address, recipient_key
from schemas.settings import Settings
from schemas.topics import Topics

Say = Callable[[str], None]


def checked_address(address: str) -> str:
    try:
        validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise CliError(f"not an email address: {address!r} ({exc})", status=2) from None
    return normalize_address(address)


def change_suppression(
    settings: Settings, action: str, address: str, list_id: str, reason: str, say: Say, wait: float = 10.0
) -> int:
    """Publish the operator's add or remove (acks=all), then show the worker's state once it applied it."""
    import asyncio

    from producers.publisher import KafkaPublisher, PublishError

    recipient = checked_address(address)
    cls = SuppressionAdded if action == "add" else SuppressionRemoved
    event = cls(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        campaign_id="",
        message_id="",
        recipient=recipient,
        list_id=list_id,
        reason=reason,
    )
    publisher = KafkaPublisher(settings)
    try:
        asyncio.run(
            publisher.publish_confirmed(
                Topics.for_prefix(settings.topic_prefix).events,
                recipient_key(recipient, ""),
                encode(event),
                settings.publish_timeout_seconds,
            )
        )
    except PublishError as exc:
        raise CliError(f"Kafka did not acknowledge the {action}: {exc}") from None
    finally:
        publisher.close()
    scope = f"list {list_id}" if list_id else "every list"
    say(f"{action}: {recipient} ({scope}) published as event {event.event_id}")
    if not port_open(settings.worker_web_port):
        say("no worker running: it applies the change when it starts")
        return 0
    wanted = action == "add"
    deadline = time.monotonic() + wait
    while True:
        state = suppression_check(settings, recipient)
        applied = (list_id in state["lists"]) if list_id else state["suppressed"]
        if applied == wanted:
            say(describe(state))
            return 0
        if time.monotonic() > deadline:
            raise CliError(f"the worker has not applied the {action} after {wait:.0f} s; check `mailpulse status`")
        time.sleep(0.2)


def describe(state: dict[str, Any]) -> str:
    if not state["suppressed"]:
        return f"{state['address']}: not suppressed"
    return f"{state['address']}: suppressed ({', '.join(state['reasons'])}) since {state['since']}"


def latest_changes(settings: Settings, say: Say) -> Iterator[SuppressionChange]:
    """The latest change of every address on the compacted suppression topic, read to its current end."""
    topic = Topics.for_prefix(settings.topic_prefix).suppression
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "mailpulse-suppression-export",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise CliError(f"topic {topic} not found on {settings.bootstrap_servers}")
        remaining: dict[int, int] = {}
        assignment = []
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                remaining[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
                total += high - low
        consumer.assign(assignment)
        latest: dict[str, SuppressionChange] = {}
        with Progress(f"reading {topic}", total, "record") as progress:
            while remaining:
                messages = consumer.consume(10_000, timeout=1.0)
                for msg in messages:
                    if msg.error():
                        continue
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    if offset + 1 >= remaining.get(partition, 0):
                        remaining.pop(partition, None)
                    try:
                        change = decode_suppression_change(msg.value() or b"")
                    except DecodeError:
                        continue
                    latest[change.recipient] = change
                progress.update(len(messages), addresses=len(latest))
        yield from latest.values()
    finally:
        consumer.close()


def export(settings: Settings, fmt: str, include_cleared: bool, say: Say) -> int:
    out = sys.stdout
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["address", "suppressed", "reasons", "lists", "since", "caused_by", "changed_at"])
    count = 0
    for change in latest_changes(settings, say):
        if not change.suppressed and not include_cleared:
            continue
        count += 1
        since = change.since.isoformat() if change.since else ""
        if writer is not None:
            row = [change.recipient, str(change.suppressed).lower(), ";".join(change.reasons), ";".join(change.lists)]
            writer.writerow([*row, since, change.caused_by, change.changed_at.isoformat()])
        else:
            out.write(encode(change).decode() + "\n")
    say(f"exported {count} address(es)")
    return 0
