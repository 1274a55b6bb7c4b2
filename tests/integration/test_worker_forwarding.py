"""A lookup asked of one worker and answered by the one holding the key: the caller's API key never travels.

Issue 20 item 11: a worker replayed the caller's request to the owner with its headers, API key included,
at whatever address faust's group advertised. Here the two workers take different operator keys (the same
secrets): a forward that carried the caller's key is refused by the owner; one signed with the shared
secret is answered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mailpulse.topics_admin import ensure_topics
from processors.routing import partition_for
from schemas.events import SuppressionAdded, new_event_id
from schemas.settings import Settings
from tests.integration.helpers import publish_events, unique, wait_until
from tests.support.worker_process import Worker


@pytest.fixture
def two_workers(stack: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Worker, Worker]]:
    base = {
        **os.environ,
        "MAILPULSE_TOPIC_PREFIX": unique("fwd"),
        "MAILPULSE_KAFKA_BOOTSTRAP": stack.bootstrap_servers,
        "MAILPULSE_LOG_FORMAT": "text",
        "MAILPULSE_WORKER_SESSION_TIMEOUT_SECONDS": "6",
    }
    settings = Settings.from_env(base)
    ensure_topics(settings)
    workers = [
        Worker(
            {
                **base,
                "MAILPULSE_VAR_DIR": str(tmp_path / name),
                "MAILPULSE_WORKER_WEB_PORT": str(port),
                "MAILPULSE_API_KEYS": f"key-of-{name}",
            },
            name,
        ).start()
        for name, port in (("a", 16191), ("b", 16192))
    ]
    try:
        yield settings, workers[0], workers[1]
    finally:
        for worker in workers:
            worker.stop()


def held(worker: Worker) -> int:
    answer = worker.get("/healthz")
    return int(answer.json().get("partitions", 0)) if answer is not None and answer.status_code == 200 else 0


def test_a_lookup_is_forwarded_to_the_owner_without_the_callers_key(
    two_workers: tuple[Settings, Worker, Worker],
) -> None:
    settings, a, b = two_workers
    # Both hold partitions: every lookup asked of either goes to one or the other.
    wait_until(
        lambda: held(a) > 0 and held(b) > 0,
        timeout=120,
        what="the partitions split between the workers",
    )
    addresses = [f"{unique('fwd')}@example.org" for _ in range(24)]
    now = datetime.now(UTC)
    publish_events(
        settings,
        [
            SuppressionAdded(event_id=new_event_id(), occurred_at=now, campaign_id="", message_id="", recipient=r)
            for r in addresses
        ],
    )
    partitions = {partition_for(r.encode(), settings.topic_partitions) for r in addresses}
    assert len(partitions) > 1  # some are held by the worker that is not asked

    def answers() -> list[int]:
        with httpx.Client(base_url=f"http://127.0.0.1:{a.port}", timeout=10) as client:
            got = [client.get(f"/suppression/{r}", headers={"X-API-Key": "key-of-a"}) for r in addresses]
        return [g.status_code if g.status_code != 200 or g.json()["suppressed"] else 0 for g in got]

    codes = wait_until(
        lambda: (c := answers()) and all(code in (200, 401) for code in c) and c,
        timeout=60,
        what="every lookup answered",
    )
    assert codes == [200] * len(addresses), codes  # a forward carrying key-of-a would get 401 from worker b
    # Worker b itself still wants its own key from a caller.
    asked_b = httpx.get(f"http://127.0.0.1:{b.port}/suppression/{addresses[0]}", headers={"X-API-Key": "key-of-a"})
    assert asked_b.status_code == 401
