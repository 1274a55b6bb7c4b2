"""A stack on a local cluster of three brokers (two of three copies take each write), two workers and two
edges loses one broker to SIGKILL mid-campaign: it keeps sending and tracking while the broker is down, and
once it is back every recipient was mailed once and the report counts exactly what was sent and opened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from mailpulse.localkafka import LocalKafka
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from schemas.topics import Topics
from tests.integration.conftest import ROOT, TEST_ENV, fresh_stack
from tests.integration.helpers import edge, post_campaign, report, sql, unique, wait_until
from tests.support.maildir_arrivals import arrivals

CLUSTER_ENV = {
    **TEST_ENV,
    "MAILPULSE_VAR_DIR": str(ROOT / "var" / "test-cluster"),
    "MAILPULSE_LOCAL_KAFKA_BROKERS": "3",
    "MAILPULSE_WORKERS": "2",  # the second's views on 16176
    "MAILPULSE_EDGES": "2",  # the second on 18190 (operator 18191, bounce mail 12636)
    "MAILPULSE_LOCAL_KAFKA_PORT": "19400",  # brokers on 19400, 19402, 19404
    "MAILPULSE_SMTP_URL": "smtp://127.0.0.1:12625",
    "MAILPULSE_SMTP_SINK_PORT": "12625",
    "MAILPULSE_EDGE_PORT": "18180",
    "MAILPULSE_OPERATOR_PORT": "18181",
    "MAILPULSE_SINK_API_PORT": "18182",
    "MAILPULSE_WORKER_WEB_PORT": "16166",
    "MAILPULSE_BOUNCE_SMTP_PORT": "12626",
    "MAILPULSE_SMTP_SINK_REPLIES": "",
    "MAILPULSE_DKIM_SELECTOR": "",
    "MAILPULSE_DKIM_DOMAIN": "",
    "MAILPULSE_DKIM_PRIVATE_KEY_FILE": "",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Settings]:
    yield from fresh_stack({**os.environ, **CLUSTER_ENV})


def busiest_leader(settings: Settings, topic: str) -> int:
    """The broker leading most of ``topic``'s partitions: losing it moves the most leaders."""
    metadata = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(topic, timeout=10)
    leaders = Counter(p.leader for p in metadata.topics[topic].partitions.values())
    return leaders.most_common(1)[0][0]


def status(environ: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-m", "mailpulse", "status", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    return done.returncode, {p["service"]: p for p in json.loads(done.stdout)}


def test_the_stack_keeps_sending_and_tracking_through_a_broker_killed_mid_campaign(cluster: Settings) -> None:
    kafka = LocalKafka.from_settings(cluster)
    assert kafka.brokers_up() == 3
    topics = Topics.for_prefix(cluster.topic_prefix)
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(topics.outbox, timeout=10)
    assert {len(p.replicas) for p in metadata.topics[topics.outbox].partitions.values()} == {3}

    campaign = unique("cluster")
    audience = 3_000
    people = [f"{unique('member')}@example.org" for _ in range(audience)]
    started = time.time()
    for start in range(0, audience, 400):  # in parts, each under the request body limit
        assert post_campaign(cluster, campaign, people[start : start + 400]).status_code == 202
    wait_until(lambda: report(cluster, campaign)["sent"] >= 300, timeout=120, what="sending under way")

    environ = {**os.environ, **CLUSTER_ENV}
    code, processes = status(environ)
    assert code == 0 and set(processes) == {
        *("kafka-1", "kafka-2", "kafka-3", "smtp-sink", "sink"),
        *("worker-1", "worker-2", "edge-1", "edge-2"),
    }
    assert all(p["state"] == "up" and p["pid"] for p in processes.values())
    ports = {name: p["port"] for name, p in processes.items()}
    assert (ports["kafka-2"], ports["worker-2"], ports["edge-2"]) == (19402, 16176, 18190)

    victim = busiest_leader(cluster, topics.outbox)
    assert kafka.node(victim).signal(signal.SIGKILL) is not None
    code, processes = status(environ)
    assert code == 1 and processes[f"kafka-{victim}"] == {
        "service": f"kafka-{victim}",
        "pid": None,
        "port": kafka.node(victim).port,
        "state": "down",
    }
    killed_at = report(cluster, campaign)["sent"]

    # Tracking while the broker is down, through both edges: every pixel is answered, and each open must
    # reach the report.
    edges = [edge(cluster), f"http://127.0.0.1:{cluster.edge_port + 10}"]
    codec = TokenCodec(cluster.secret_keys)
    opened = people[:200]
    with httpx.Client(timeout=10) as client:
        for number, person in enumerate(opened):
            token = codec.mint(TokenClaims(LinkKind.OPEN, f"m{number}-{campaign}", campaign, "news", person))
            url = f"{edges[number % 2]}/o/{token}.gif"
            pixel = client.get(url, headers={"User-Agent": "Mozilla/5.0 Firefox/133.0"})
            assert pixel.status_code == 200
    # With two brokers of three the whole campaign goes out and every open is counted before the third is
    # back: the leaders it held moved to the others, which hold every acknowledged record.
    down = wait_until(
        lambda: (r := report(cluster, campaign)) and r["sent"] == audience and r["opens_total"] == len(opened) and r,
        timeout=180,
        interval=1.0,
        what="every send and open in the report while a broker is down",
    )
    assert down["sent"] > killed_at and down["failed"] == 0 and down["skipped"] == 0
    # Fenced once its session lapsed (broker.session.timeout.ms, 9 s): the cluster saw it go.
    wait_until(lambda: kafka.brokers_up() == 2, timeout=30, what="the cluster to count two brokers")

    kafka.start_node(victim)
    assert kafka.brokers_up() == 3
    time.sleep(3)  # what a returning broker could bring back twice would show by now
    counts = lambda r: {k: v for k, v in r.items() if isinstance(v, int)}  # noqa: E731
    assert counts(report(cluster, campaign)) == counts(down)
    # Every recipient mailed exactly once, counted at the relay.
    mailed = Counter(r for r, _ in arrivals(cluster.var_dir / "maildir", campaign, started - 1))
    assert set(mailed) == set(people) and max(mailed.values()) == 1
    # And every raw event in ClickHouse once: as many rows as distinct event ids, one sent row per recipient.
    rows = sql(
        cluster,
        f"SELECT count() AS n, uniqExact(event_id) AS ids, countIf(kind = 'sent') AS sent, "
        f"countIf(kind = 'open') AS opens FROM events WHERE campaign_id = '{campaign}'",
    )[0]
    assert rows["n"] == rows["ids"] and rows["sent"] == audience and rows["opens"] == len(opened)
