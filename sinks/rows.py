"""Event -> ClickHouse row (pure). Column order here is the insert order; the
table itself is defined only in migrations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.codec import decode_event, decode_suppression_change
from schemas.events import AnyEvent, SuppressionChange

COLUMNS: tuple[str, ...] = (
    "event_id",
    "kind",
    "occurred_at",
    "campaign_id",
    "message_id",
    "recipient",
    "list_id",
    "agent_class",
    "user_agent",
    "client_ip",
    "url",
    "scope",
    "method",
    "smtp_code",
    "smtp_reply",
    "attempt",
    "bounce_class",
    "status",
    "diagnostic",
    "source",
    "reason",
    "feedback_type",
    "schema_version",
    "kafka_partition",
    "kafka_offset",
)

Row = tuple[Any, ...]


def event_to_row(event: AnyEvent, partition: int, offset: int) -> Row:
    get = event.__getattribute__

    def field(name: str, default: Any) -> Any:
        try:
            value = get(name)
        except AttributeError:
            return default
        return default if value is None else value

    occurred: datetime = event.occurred_at
    return (
        event.event_id,
        event.kind,
        occurred,
        event.campaign_id,
        event.message_id,
        event.recipient or "",
        event.list_id,
        str(field("agent_class", "")),
        field("user_agent", ""),
        field("client_ip", ""),
        field("url", ""),
        str(field("scope", "")),
        field("method", ""),
        int(field("smtp_code", 0)),
        field("smtp_reply", ""),
        int(field("attempt", 0)),
        str(field("bounce_class", "")),
        field("status", ""),
        field("diagnostic", ""),
        field("source", ""),
        field("reason", ""),
        field("feedback_type", ""),
        event.schema_version,
        partition,
        offset,
    )


SUPPRESSION_COLUMNS: tuple[str, ...] = (
    "recipient", "suppressed", "reasons", "lists", "since", "caused_by", "changed_at",
    "kafka_partition", "kafka_offset",
)  # fmt: skip


def suppression_change_to_row(change: SuppressionChange, partition: int, offset: int) -> Row:
    return (
        change.recipient,
        change.suppressed,
        list(change.reasons),
        list(change.lists),
        change.since,
        change.caused_by,
        change.changed_at,
        partition,
        offset,
    )


@dataclass(frozen=True)
class TableMapping:
    """How the records of one topic become rows of one table (decode raises DecodeError)."""

    table: str
    columns: tuple[str, ...]
    to_row: Callable[[bytes, int, int], Row]


EVENTS = TableMapping("events", COLUMNS, lambda data, p, o: event_to_row(decode_event(data), p, o))
SUPPRESSION_CHANGES = TableMapping(
    "suppression_changes",
    SUPPRESSION_COLUMNS,
    lambda data, p, o: suppression_change_to_row(decode_suppression_change(data), p, o),
)
