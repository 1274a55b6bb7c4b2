"""`mailpulse campaign pause|resume|cancel|status|list`: a campaign's lifecycle from the command line.

A pause, resume or cancel is published (acks=all) and the command returns once the worker applied it, as
`suppression add` does; a cancel is final. Status and list show each campaign's state and progress.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from mailpulse.errors import CliError
from mailpulse.operator_key import operator_keys
from mailpulse.processes import port_open
from producers.campaign_status import WorkerClient, WorkerUnavailable
from schemas.campaigns import CampaignAction, Verdict, campaign_record, control_event, judge
from schemas.settings import Settings
from schemas.topics import Topics

Say = Callable[[str], None]
STATUS_FIELDS = ("state", "since", "reason", "source", "queued", "sent", "skipped", "failed", "progress", "paused_at")


def _client(settings: Settings) -> WorkerClient:
    keys = operator_keys(settings)
    if not keys:
        raise CliError("no operator API key: set MAILPULSE_API_KEYS, or start the local stack (`make up`)", status=2)
    return WorkerClient(settings, keys)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except WorkerUnavailable as exc:
        raise CliError(str(exc)) from None


def describe(status: dict[str, Any]) -> str:
    lines = [f"campaign {status['campaign']}"]
    for key in STATUS_FIELDS:
        value = status.get(key)
        if key == "progress" and value is not None:
            value = f"{value * 100:.1f}%"
        if value not in (None, ""):
            lines.append(f"  {key:<10} {value}")
    return "\n".join(lines)


def print_status(settings: Settings, campaign: str, fmt: str, say: Say) -> int:
    status = _run(_client(settings).status(campaign))
    say(json.dumps(status) if fmt == "json" else describe(status))
    return 0


def print_list(settings: Settings, fmt: str, say: Say) -> int:
    statuses = _run(_client(settings).statuses())
    if fmt == "json":
        say(json.dumps(statuses))
        return 0
    say(f"{'campaign':<30} {'state':<10} {'queued':>8} {'sent':>8} {'skipped':>8} {'progress':>9}")
    for s in statuses:
        progress = f"{s['progress'] * 100:.1f}%" if s["progress"] is not None else "-"
        say(f"{s['campaign']:<30} {s['state']:<10} {s['queued']:>8} {s['sent']:>8} {s['skipped']:>8} {progress:>9}")
    return 0


def change_campaign(
    settings: Settings, action: CampaignAction, campaign: str, reason: str, say: Say, wait: float = 30.0
) -> int:
    """Publish ``action`` unless the campaign's state refuses it; return once the worker applied it."""
    from producers.publisher import KafkaPublisher, PublishError

    client = _client(settings)
    worker_up = port_open_url(settings.worker_url)
    state = _run(client.state(campaign)) if worker_up else None
    verdict, message = judge(action, state["state"] if state else "active")
    if verdict is Verdict.REFUSED:
        raise CliError(message)
    if verdict is Verdict.ALREADY:
        say(f"campaign {campaign}: {message}")
        return 0
    event = control_event(action, campaign, reason=reason)
    key, value = campaign_record(event)
    publisher = KafkaPublisher(settings)
    try:
        topic = Topics.for_prefix(settings.topic_prefix).campaigns
        asyncio.run(publisher.publish_confirmed(topic, key, value, settings.publish_timeout_seconds))
        started = time.monotonic()  # Kafka has it: from here on the worker's gate is what it waits for
    except PublishError as exc:
        raise CliError(f"Kafka did not acknowledge the {action}: {exc}") from None
    finally:
        publisher.close()
    say(f"{action}: campaign {campaign} published as event {event.event_id}")
    if not worker_up:
        say("no worker running: it applies the change when it starts")
        return 0
    deadline = started + wait
    while True:
        state = _run(client.state(campaign))
        if state is not None and state.get("changed_by") == event.event_id:
            say(f"applied by the worker {time.monotonic() - started:.2f} s after Kafka acknowledged it")
            say(describe(_run(client.status(campaign))))
            return 0
        if time.monotonic() > deadline:
            raise CliError(f"the worker has not applied the {action} after {wait:.0f} s; check `mailpulse status`")
        time.sleep(0.02)


def port_open_url(url: str) -> bool:
    """Whether something listens at the host and port of ``url``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return port_open(parts.port or 80, parts.hostname or "127.0.0.1")
