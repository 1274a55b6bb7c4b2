"""Helpers that talk to the real services of the test stack."""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from schemas.auth import auth_headers
from schemas.codec import decode_event, encode
from schemas.events import AgentClass, AnyEvent, Click, Open, Sent, new_event_id
from schemas.kafka_config import producer_config
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims
from schemas.topics import Topics
from tests.support.maildir_arrivals import stored

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.25, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check} (last: {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# Bounce and complaint mail as real MTAs and feedback loops write it (tests/fixtures/bounces/expected.json).
BOUNCE_SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def link_claims(kind: LinkKind, campaign: str, **extra: str) -> TokenClaims:
    """What a link of ``kind`` names: a new message and recipient of ``campaign``."""
    return TokenClaims(kind, unique("m"), campaign, "news", f"{unique('p')}@example.org", **extra)


def arrived(reader: TopicReader, campaign: str, count: int, seconds: float = 20) -> list[AnyEvent]:
    """The events of ``campaign`` the reader sees, once there are ``count`` of them (or the time is up)."""
    found = reader.events(seconds, until=lambda evs: sum(e.campaign_id == campaign for e in evs) >= count)
    return [e for e in found if e.campaign_id == campaign]


def edge(settings: Settings) -> str:
    """The public edge's base URL."""
    return f"http://127.0.0.1:{settings.edge_port}"


def operator(settings: Settings) -> str:
    """The operator edge's base URL."""
    return f"http://127.0.0.1:{settings.operator_port}"


def operator_headers(settings: Settings) -> dict[str, str]:
    return auth_headers(settings.api_keys)


def sql(settings: Settings, statement: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"http://127.0.0.1:{settings.sink_api_port}/sql",
        content=statement.encode(),
        headers=operator_headers(settings),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def report(settings: Settings, campaign: str) -> dict[str, Any]:
    response = httpx.get(
        f"http://127.0.0.1:{settings.sink_api_port}/reports/{campaign}", headers=operator_headers(settings), timeout=30
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def suppression(settings: Settings, address: str) -> dict[str, Any]:
    response = httpx.get(
        f"http://127.0.0.1:{settings.worker_web_port}/suppression/{address}",
        headers=operator_headers(settings),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def post_campaign(settings: Settings, campaign: str, recipients: list[str], **extra: Any) -> httpx.Response:
    body = {
        "campaign_id": campaign,
        "list_id": extra.pop("list_id", "news"),
        "subject": "Hello $first_name",
        "html": '<html><body><p>Hi <a href="https://example.com/offer">offer</a></p></body></html>',
        "text": "Hi, see https://example.com/offer",
        "recipients": [{"email": r, "first_name": "Tester"} for r in recipients],
        **extra,
    }
    return httpx.post(
        f"http://127.0.0.1:{settings.operator_port}/campaigns",
        json=body,
        headers=operator_headers(settings),
        timeout=30,
    )


def _maildir(settings: Settings, recipient: str | None, campaign: str | None) -> list[tuple[bytes, EmailMessage]]:
    """The messages in the SMTP sink's Maildir (as received, and parsed once), filtered by their headers
    first: only the matching ones are read whole."""
    found: list[tuple[bytes, EmailMessage]] = []
    for arrival in stored(settings.var_dir / "maildir"):
        if recipient and arrival.recipient != recipient.lower():
            continue
        if campaign and arrival.campaign != campaign:
            continue
        raw = Path(arrival.path).read_bytes()
        found.append((raw, email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)))
    return found


def maildir_raw(settings: Settings, recipient: str | None = None, campaign: str | None = None) -> list[bytes]:
    """The messages in the SMTP sink's Maildir exactly as received."""
    return [raw for raw, _ in _maildir(settings, recipient, campaign)]


def maildir_messages(
    settings: Settings, recipient: str | None = None, campaign: str | None = None
) -> list[EmailMessage]:
    return [msg for _, msg in _maildir(settings, recipient, campaign)]


class TopicReader:
    """Reads a topic from the offsets it had when created: what arrived since."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": unique("test-reader"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        ends = []
        for tp in partitions:
            _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            ends.append(TopicPartition(topic, tp.partition, high if high >= 0 else OFFSET_END))
        self.consumer.assign(ends)

    def read(self, seconds: float, until: Callable[[list[Any]], bool] | None = None) -> list[Any]:
        records: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            records.append(msg)
            if until and until(records):
                break
        return records

    def events(self, seconds: float, until: Callable[[list[AnyEvent]], bool] | None = None) -> list[AnyEvent]:
        decoded: list[AnyEvent] = []

        def stop(records: list[Any]) -> bool:
            decoded.append(decode_event(records[-1].value()))
            return bool(until and until(decoded))

        self.read(seconds, stop)
        return decoded

    def close(self) -> None:
        self.consumer.close()


def publish_events(settings: Settings, events: list[AnyEvent], topic: str | None = None) -> None:
    """Publish events keyed like the edges do (murmur2 on the normalized recipient)."""
    from confluent_kafka import Producer

    from schemas.codec import encode
    from schemas.keys import recipient_key
    from schemas.topics import Topics

    target = topic or Topics.for_prefix(settings.topic_prefix).events
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random", "linger.ms": 5}
    )
    for event in events:
        producer.produce(target, key=recipient_key(event.recipient, event.campaign_id), value=encode(event))
        producer.poll(0)
    assert producer.flush(60) == 0


def stats(settings: Settings, campaign: str, port: int | None = None, **params: str) -> Any:
    response = httpx.get(
        f"http://127.0.0.1:{port or settings.worker_web_port}/stats/{campaign}",
        params=params,
        headers=operator_headers(settings),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def cli(settings: Settings, *args: str) -> Any:
    """Run the ``mailpulse`` command against the test stack; returns the completed process."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "mailpulse", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def produce(settings: Settings, events: list[AnyEvent]) -> None:
    """Straight onto the events topic, acknowledged by the broker."""
    producer = Producer(producer_config(settings))
    topic = Topics.for_prefix(settings.topic_prefix).events
    for event in events:
        producer.produce(topic, key=recipient_key(event.recipient, event.campaign_id), value=encode(event))
        if len(producer) > 50_000:
            producer.poll(0.1)
    assert producer.flush(60) == 0


def campaign_events(campaign: str, people: int, at: datetime) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for i in range(people):
        base = {
            "occurred_at": at + timedelta(minutes=(i * 7) % 300),
            "campaign_id": campaign,
            "message_id": f"{campaign}-{i}",
            "recipient": f"p{i}@{campaign}.example",
            "list_id": "news",
        }
        events.append(Sent(event_id=new_event_id(), **base))  # type: ignore[arg-type]
        if i % 2 == 0:
            events.append(Open(event_id=new_event_id(), **base))  # type: ignore[arg-type]
        if i % 5 == 0:
            events.append(Open(event_id=new_event_id(), agent_class=AgentClass.APPLE_MPP, **base))  # type: ignore[arg-type]
        if i % 4 == 0:
            events.append(Click(event_id=new_event_id(), url="https://example.com/", **base))  # type: ignore[arg-type]
    return events
