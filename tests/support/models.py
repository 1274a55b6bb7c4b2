"""Plain-Python models the tests compare the pipeline with, and a generator of realistic event streams.

The report model is written from the report's definition (distinct events per message, like the
ClickHouse query), not from the processors' incremental code, so the two check each other.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.suppression import EMPTY, Policy, SuppressionEntry, apply_event, suppression_reasons
from schemas.bounce_reasons import BounceReason
from schemas.events import (
    AgentClass,
    AnyEvent,
    Bounce,
    BounceClass,
    Click,
    Complaint,
    Deferred,
    Delivered,
    Failed,
    Open,
    SendSkipped,
    Sent,
    SuppressionAdded,
    SuppressionRemoved,
    Unsubscribe,
    UnsubscribeScope,
)
from schemas.keys import normalize_address
from schemas.report import COUNT_KEYS, breakdown, provider_count_key, reason_count_key, with_rates
from schemas.settings import Settings


def report_model(events: list[AnyEvent], campaign: str) -> dict[str, Any]:
    """Messages are counted by their distinct events; opens, clicks and deferrals are distinct events of the
    campaign, a message id or not (as the hourly rollup counts them)."""
    of_campaign = {e.event_id: e for e in events if e.campaign_id == campaign}
    distinct = {event_id: e for event_id, e in of_campaign.items() if e.message_id}
    per_message: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in distinct.values():
        per_message[event.message_id].append(event)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    cells: dict[str, int] = defaultdict(int)
    attempted = 0
    for evs in per_message.values():
        kinds = {e.kind for e in evs}
        hard = any(isinstance(e, Bounce) and e.bounce_class is BounceClass.HARD for e in evs)
        soft = any(isinstance(e, Bounce) and e.bounce_class is BounceClass.SOFT for e in evs)
        block = any(isinstance(e, Bounce) and e.bounce_class is BounceClass.BLOCK for e in evs)
        bounces = [e for e in evs if isinstance(e, Bounce)]
        for key in {reason_count_key(b.reason) for b in bounces} | {
            provider_count_key(b.mailbox_provider or "other", b.bounce_class) for b in bounces
        }:
            cells[key] += 1
        opens = [e for e in evs if isinstance(e, Open)]
        clicks = [e for e in evs if isinstance(e, Click)]
        counts["sent"] += "sent" in kinds
        counts["delivered"] += bool(kinds & {"sent", "delivered"}) and not (hard or soft or block)
        counts["failed"] += "failed" in kinds
        tried = bool(kinds & {"sent", "failed"}) or hard or soft or block
        counts["skipped"] += "send.skipped" in kinds and not tried
        counts["bounced_hard"] += hard
        counts["bounced_soft"] += soft
        counts["blocked"] += block
        counts["complaints"] += "complaint" in kinds
        counts["unsubscribes"] += "unsubscribe" in kinds
        counts["opens_unique_human"] += any(o.agent_class is AgentClass.HUMAN for o in opens)
        counts["clicks_unique"] += bool(clicks)
        attempted += bool(kinds & {"sent", "failed"}) or hard or soft or block
    every = list(of_campaign.values())
    counts["deferred"] = sum(1 for e in every if isinstance(e, Deferred))
    counts["opens_total"] = sum(1 for e in every if isinstance(e, Open))
    counts["opens_machine"] = sum(1 for e in every if isinstance(e, Open) and e.agent_class is not AgentClass.HUMAN)
    counts["clicks_total"] = sum(1 for e in every if isinstance(e, Click))
    return {**with_rates(counts, attempted), **breakdown(cells)}


def suppression_model(events: list[AnyEvent], settings: Settings) -> dict[str, list[str]]:
    """Every address's suppression reasons after a plain fold of the events in stream order (the rules
    themselves are unit-tested; this is what a worker's table must equal, crash or no crash)."""
    policy = Policy(settings.soft_bounce_threshold, timedelta(days=settings.soft_bounce_window_days))
    entries: dict[str, SuppressionEntry] = {}
    for event in events:
        if event.recipient:
            address = normalize_address(event.recipient)
            entries[address] = apply_event(entries.get(address, EMPTY), event, policy)
    return {address: suppression_reasons(entry) for address, entry in entries.items()}


def event_stream(
    seed: int, campaigns: list[str], recipients: int, domain: str = "model.example", start: datetime | None = None
) -> list[AnyEvent]:
    """A campaign's life: sends, bounces, deferrals, opens (human and machine), clicks, unsubscribes,
    complaints, and operator adds and removes, over a few hours, with some events published twice."""
    rng = random.Random(seed)
    t0 = start or datetime(2026, 11, 20, 8, tzinfo=UTC)
    events: list[AnyEvent] = []
    n = 0

    def eid() -> str:
        nonlocal n
        n += 1
        return f"{seed}-{n:08d}"

    for campaign in campaigns:
        for i in range(recipients):
            recipient = f"r{i}@{domain}"
            base: dict[str, Any] = {"campaign_id": campaign, "message_id": f"{campaign}-m{i}", "recipient": recipient}
            base["list_id"] = "news"
            at = t0 + timedelta(minutes=rng.randrange(0, 240))

            def later(minutes: int, at: datetime = at) -> datetime:
                return at + timedelta(minutes=minutes)

            roll = rng.random()
            provider = rng.choice(["gmail", "outlook", "yahoo", "icloud", "other", ""])
            if roll < 0.05:
                unknown = BounceReason.UNKNOWN_USER
                events.append(
                    Bounce(
                        event_id=eid(), occurred_at=at, bounce_class=BounceClass.HARD, reason=unknown,
                        mailbox_provider=provider, **base,
                    )
                )  # fmt: skip
                continue
            if roll < 0.065:
                # Refused for the sender's sake (a blocklist): at send time, or sent and refused by mail later.
                if rng.random() < 0.5:
                    events.append(Sent(event_id=eid(), occurred_at=at, **base))
                events.append(
                    Bounce(
                        event_id=eid(), occurred_at=later(2), bounce_class=BounceClass.BLOCK,
                        reason=BounceReason.BLOCKED, mailbox_provider=provider, **base,
                    )
                )  # fmt: skip
                continue
            if roll < 0.08:
                events.append(Deferred(event_id=eid(), occurred_at=at, **base))
                events.append(Failed(event_id=eid(), occurred_at=later(30), **base))
                events.append(Bounce(event_id=eid(), occurred_at=later(30), bounce_class=BounceClass.SOFT, **base))
                continue
            if roll < 0.1:
                events.append(SendSkipped(event_id=eid(), occurred_at=at, reason="unsubscribed", **base))
                continue
            events.append(Sent(event_id=eid(), occurred_at=at, **base))
            if rng.random() < 0.3:
                events.append(Delivered(event_id=eid(), occurred_at=later(1), **base))
            if rng.random() < 0.04:
                full = BounceReason.MAILBOX_FULL
                events.append(
                    Bounce(
                        event_id=eid(), occurred_at=later(5), bounce_class=BounceClass.SOFT, reason=full,
                        mailbox_provider=provider, **base,
                    )
                )  # fmt: skip
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                agent = rng.choice([AgentClass.HUMAN, AgentClass.HUMAN, AgentClass.APPLE_MPP, AgentClass.GOOGLE_PROXY])
                events.append(Open(event_id=eid(), occurred_at=later(rng.randrange(2, 600)), agent_class=agent, **base))
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                events.append(Click(event_id=eid(), occurred_at=later(rng.randrange(3, 600)), url="https://x/", **base))
            if rng.random() < 0.05:
                scope = rng.choice([UnsubscribeScope.LIST, UnsubscribeScope.ALL])
                events.append(Unsubscribe(event_id=eid(), occurred_at=later(20), scope=scope, **base))
            if rng.random() < 0.02:
                events.append(Complaint(event_id=eid(), occurred_at=later(30), **base))
    manual: dict[str, Any] = {"campaign_id": "", "message_id": "", "list_id": ""}
    for i in range(0, recipients, 17):
        recipient = f"r{i}@{domain}"
        at = t0 + timedelta(hours=5)
        events.append(SuppressionAdded(event_id=eid(), occurred_at=at, recipient=recipient, **manual))
        if i % 34 == 0:
            at = t0 + timedelta(hours=6)
            events.append(SuppressionRemoved(event_id=eid(), occurred_at=at, recipient=recipient, **manual))
    # Redelivered duplicates (a provider retrying a webhook): same event ids, later in the stream.
    events += rng.sample(events, len(events) // 20)
    return events
