"""The local broker keeps data across stop/start; the sink dead-letters poison and goes on."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mailpulse.localkafka import LocalKafka
from mailpulse.processes import port_open
from schemas.codec import encode
from schemas.events import Open, new_event_id, utcnow
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.helpers import TopicReader, sql, unique, wait_until


def test_broker_stop_and_start_keeps_topic_data(stack: Settings) -> None:
    home = stack.var_dir / "restart-broker"
    shutil.rmtree(home, ignore_errors=True)
    kafka = LocalKafka(home=Path(home), port=19192)
    bootstrap = "127.0.0.1:19192"
    kafka.start()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("kept", num_partitions=1, replication_factor=1)])["kept"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        payloads = [f"record-{i}".encode() for i in range(50)]
        for payload in payloads:
            producer.produce("kept", payload)
        assert producer.flush(30) == 0
        kafka.stop()
        assert not port_open(19192)
        kafka.start()
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
        )
        consumer.subscribe(["kept"])
        seen: list[bytes] = []
        wait_until(
            lambda: (
                ((m := consumer.poll(0.5)) is not None and not m.error() and seen.append(m.value())) or len(seen) == 50
            ),
            timeout=60,
            what="50 records after restart",
        )
        consumer.close()
        assert seen == payloads
    finally:
        kafka.stop()


def test_poison_message_goes_to_dead_letter_topic_and_next_event_lands(stack: Settings) -> None:
    topics = Topics.for_prefix(stack.topic_prefix)
    dlq = TopicReader(stack, topics.dead_letter)
    campaign = unique("poison")
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "partitioner": "murmur2_random"})
    key = b"poison@example.org"
    producer.produce(topics.events, key=key, value=b'{"kind": "open", "this is": not json')
    good = Open(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        campaign_id=campaign,
        message_id="m1",
        recipient="poison@example.org",
    )
    producer.produce(topics.events, key=key, value=encode(good))
    assert producer.flush(30) == 0

    rows = wait_until(
        lambda: sql(stack, f"SELECT event_id FROM events WHERE campaign_id = '{campaign}'"),
        what="the good event after the poison one",
    )
    assert rows == [{"event_id": good.event_id}]
    dead = dlq.read(30, until=lambda records: any(r.key() == key for r in records))
    poison = [r for r in dead if r.key() == key]
    assert poison, "poison message not in the dead-letter topic"
    headers = dict(poison[0].headers() or [])
    assert b"malformed event JSON" in headers["reason"]
    assert poison[0].value().startswith(b'{"kind": "open", "this is"')
    dlq.close()


def test_records_clickhouse_refuses_go_to_the_dead_letter_topic_and_the_rest_of_their_batch_lands(
    stack: Settings,
) -> None:
    """Records that look as the producers write them go to ClickHouse undecoded; the batch it refuses is
    stored record by record, and only the refused records are dead-lettered, each with its reason."""
    topics = Topics.for_prefix(stack.topic_prefix)
    dlq = TopicReader(stack, topics.dead_letter)
    campaign = unique("refused")
    key = b"refused@example.org"
    goods = [
        Open(
            event_id=new_event_id(),
            occurred_at=utcnow(),
            campaign_id=campaign,
            message_id=f"m{n}",
            recipient="refused@example.org",
        )
        for n in range(20)
    ]
    canonical = encode(goods[0])
    bad = {
        b"unknown field": canonical[:-1] + b',"device":"tablet"}',
        b"bad time": canonical.replace(b'"occurred_at":"', b'"occurred_at":"not a time ', 1),
        b"not JSON": canonical.replace(b'"message_id":"m0"', b'"message_id":m0', 1),
    }
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "partitioner": "murmur2_random"})
    for n, good in enumerate(goods):
        producer.produce(topics.events, key=key, value=encode(good))
        if n == 10:
            for value in bad.values():
                producer.produce(topics.events, key=key, value=value)
    assert producer.flush(30) == 0

    def stored() -> list[dict[str, Any]] | None:
        rows = sql(stack, f"SELECT event_id FROM events WHERE campaign_id = '{campaign}'")
        return rows if len(rows) >= len(goods) else None

    rows = wait_until(stored, what="the 20 good events around the refused ones")
    assert sorted(r["event_id"] for r in rows) == sorted(g.event_id for g in goods)
    dead = dlq.read(30, until=lambda records: sum(r.key() == key for r in records) >= 3)
    refused = {r.value(): dict(r.headers() or [])["reason"] for r in dead if r.key() == key}
    dlq.close()
    assert set(refused) == set(bad.values())
    assert b"device" in refused[bad[b"unknown field"]]  # the strict mapping names the field without a column
    assert refused[bad[b"bad time"]] and refused[bad[b"not JSON"]]


def test_a_cluster_id_that_begins_with_a_dash_formats_the_storage(tmp_path: Path) -> None:
    """URL-safe base64 ids begin with "-" one time in 64; Kafka's storage tool read such an id as an option
    and `make bench` failed to start its broker."""
    (node,) = LocalKafka(tmp_path / "kafka", 29592).nodes
    node.format_storage("-2eWlD6PRLm5p5zBmUtV0A")
    meta = (node.data_dir / "meta.properties").read_text()
    assert "cluster.id=-2eWlD6PRLm5p5zBmUtV0A" in meta
