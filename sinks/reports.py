"""Campaign reports from the raw events table.

Every count is over distinct message or event ids, so the answer is the same
before and after ReplacingMergeTree merges, and after any replay.
"""

from __future__ import annotations

from typing import Any, assert_never

from schemas.events import EventKind
from schemas.report import COUNT_KEYS, PROVIDER_COUNT, REASON_COUNT, breakdown, with_rates
from sinks.store import EventStore


def per_message_columns(kind: EventKind) -> tuple[str, ...]:
    """What one kind of event adds to a message's row of the report (``()``: reports do not count it)."""
    match kind:
        case EventKind.OPEN:
            return (
                "uniqExactIf(event_id, kind = 'open') AS opens",
                "uniqExactIf(event_id, kind = 'open' AND agent_class = 'human') AS human_opens",
                "uniqExactIf(event_id, kind = 'open' AND agent_class != 'human') AS machine_opens",
            )
        case EventKind.CLICK:
            return ("uniqExactIf(event_id, kind = 'click') AS clicks",)
        case EventKind.UNSUBSCRIBE:
            return ("max(kind = 'unsubscribe') AS unsubscribed",)
        case EventKind.SENT:
            return ("max(kind = 'sent') AS was_sent",)
        case EventKind.DELIVERED:
            return ("max(kind = 'delivered') AS was_delivered",)
        case EventKind.DEFERRED:
            return ("uniqExactIf(event_id, kind = 'deferred') AS deferrals",)
        case EventKind.FAILED:
            return ("max(kind = 'failed') AS was_failed",)
        case EventKind.BOUNCE:
            return tuple(f"max(kind = 'bounce' AND bounce_class = '{c}') AS {c}" for c in ("hard", "soft", "block"))
        case EventKind.COMPLAINT:
            return ("max(kind = 'complaint') AS complained",)
        case EventKind.SEND_SKIPPED:
            return ("max(kind = 'send.skipped') AS was_skipped",)
        case EventKind.SUPPRESSION_ADDED | EventKind.SUPPRESSION_REMOVED:
            return ()  # operators' suppression changes belong to no campaign
        case (
            EventKind.CAMPAIGN_QUEUED
            | EventKind.CAMPAIGN_PAUSED
            | EventKind.CAMPAIGN_RESUMED
            | EventKind.CAMPAIGN_CANCELLED
        ):
            return ()  # about the campaign, not a message: `mailpulse campaign status` shows them
        case _:
            assert_never(kind)


_PER_MESSAGE = (
    "SELECT message_id,\n    "
    + ",\n    ".join(column for kind in EventKind for column in per_message_columns(kind))
    + "\nFROM events\nWHERE campaign_id = {campaign:String} AND message_id != ''\nGROUP BY message_id"
)

_TOTALS = """
SELECT
    sum(was_sent) AS sent,
    sum((was_sent OR was_delivered) AND NOT (hard OR soft OR block)) AS delivered,
    sum(deferrals) AS deferred,
    sum(was_failed) AS failed,
    sum(was_skipped AND NOT (was_sent OR hard OR soft OR block OR was_failed)) AS skipped,
    sum(hard) AS bounced_hard,
    sum(soft) AS bounced_soft,
    sum(block) AS blocked,
    sum(complained) AS complaints,
    sum(unsubscribed) AS unsubscribes,
    sum(opens) AS opens_total,
    countIf(human_opens > 0) AS opens_unique_human,
    sum(machine_opens) AS opens_machine,
    sum(clicks) AS clicks_total,
    countIf(clicks > 0) AS clicks_unique,
    countIf(was_sent OR hard OR soft OR block OR was_failed) AS attempted
FROM (__PER_MESSAGE__)
"""

# From the rollup: merging uniqExact states is duplicate-proof like the totals above.
_HOURLY = """
SELECT
    hour,
    uniqExactMergeIf(messages, kind = 'sent') AS sent,
    uniqExactMergeIf(events, kind = 'open') AS opens_total,
    uniqExactMergeIf(messages, kind = 'open' AND agent_class = 'human') AS opens_unique_human,
    uniqExactMergeIf(events, kind = 'open' AND agent_class != 'human') AS opens_machine,
    uniqExactMergeIf(events, kind = 'click') AS clicks_total,
    uniqExactMergeIf(messages, kind = 'click') AS clicks_unique,
    uniqExactMergeIf(messages, kind = 'bounce' AND bounce_class != 'block') AS bounces,
    uniqExactMergeIf(messages, kind = 'bounce' AND bounce_class = 'block') AS blocked,
    uniqExactMergeIf(messages, kind = 'complaint') AS complaints,
    uniqExactMergeIf(messages, kind = 'unsubscribe') AS unsubscribes
FROM events_hourly
WHERE campaign_id = {campaign:String}
GROUP BY hour
ORDER BY hour
"""


# Bounced and blocked messages per reason and per mailbox provider and class, named like the live counts
# (schemas.report). Rows of schema 1 have no reason and no provider: undetermined and other, as live.
_BREAKDOWN_CELLS = """
SELECT key, uniqExact(message_id) AS messages FROM (
    SELECT message_id, arrayJoin([
        concat('__REASON__', if(reason = '', 'undetermined', reason)),
        concat('__PROVIDER__', if(mailbox_provider = '', 'other', mailbox_provider), ':', bounce_class)
    ]) AS key
    FROM events
    WHERE campaign_id = {campaign:String} AND kind = 'bounce'
)
GROUP BY key
"""


def campaign_report(store: EventStore, campaign_id: str) -> dict[str, Any]:
    sql = _TOTALS.replace("__PER_MESSAGE__", _PER_MESSAGE)
    columns, rows = store.query(sql, parameters={"campaign": campaign_id})
    values = dict(zip(columns, rows[0], strict=True)) if rows else {}
    counts = {key: int(values.get(key) or 0) for key in COUNT_KEYS}
    return {**with_rates(counts, attempted=int(values.get("attempted") or 0)), **bounce_breakdown(store, campaign_id)}


def bounce_breakdown(store: EventStore, campaign_id: str) -> dict[str, Any]:
    """The report's breakdown keys: messages per reason, and per provider and class."""
    sql = _BREAKDOWN_CELLS.replace("__REASON__", REASON_COUNT).replace("__PROVIDER__", PROVIDER_COUNT)
    _, rows = store.query(sql, parameters={"campaign": campaign_id})
    return breakdown({str(key): int(messages) for key, messages in rows})


def campaign_hourly(store: EventStore, campaign_id: str) -> list[dict[str, Any]]:
    columns, rows = store.query(_HOURLY, parameters={"campaign": campaign_id})
    return [
        {col: (val.isoformat() if hasattr(val, "isoformat") else val) for col, val in zip(columns, row, strict=True)}
        for row in rows
    ]


_MESSAGE = """
SELECT recipient, campaign_id, list_id
FROM events
WHERE message_id = {message:String} AND kind = 'sent' AND recipient != ''
ORDER BY occurred_at
LIMIT 1
"""


def sent_message(store: EventStore, message_id: str) -> dict[str, str] | None:
    """Whom message ``message_id`` was sent to, for which campaign and list; None until its `sent` is stored."""
    _, rows = store.query(_MESSAGE, parameters={"message": message_id})
    if not rows:
        return None
    recipient, campaign_id, list_id = rows[0]
    return {"message_id": message_id, "recipient": recipient, "campaign_id": campaign_id, "list_id": list_id}
