"""Event -> ClickHouse row (pure). Column order here is the insert order; the
table itself is defined only in migrations."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.codec import DecodeError, decode_event, decode_suppression_change, encode
from schemas.events import AnyEvent, EventKind, SuppressionChange

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
    "retry_at",
    "requests",
    "bounce_class",
    "status",
    "diagnostic",
    "source",
    "reason",
    "feedback_type",
    "mailbox_provider",
    "attributed",
    "schema_version",
    "kafka_partition",
    "kafka_offset",
)

Row = tuple[Any, ...]
# What a mapping makes of one record: a tuple in column order, or one JSONEachRow line.
MappedRow = Row | bytes


# Columns only some kinds carry, with the value a row gets when its kind has no such field.
KIND_DEFAULTS: dict[str, Any] = {
    "agent_class": "",
    "user_agent": "",
    "client_ip": "",
    "url": "",
    "scope": "",
    "method": "",
    "smtp_code": 0,
    "smtp_reply": "",
    "attempt": 0,
    "retry_at": None,
    "requests": 0,
    "bounce_class": "",
    "status": "",
    "diagnostic": "",
    "source": "",
    "reason": "",
    "feedback_type": "",
    "mailbox_provider": "",
    "attributed": True,
}


@functools.cache
def _kind_columns(cls: type) -> tuple[Callable[[Any], Any] | None, tuple[int, ...]]:
    """For one event class: a getter of its kind-specific fields and their positions among KIND_DEFAULTS."""
    names = [name for name in KIND_DEFAULTS if name in cls.__struct_fields__]  # type: ignore[attr-defined]
    positions = tuple(list(KIND_DEFAULTS).index(name) for name in names)
    if not names:
        return None, ()
    getter = operator.attrgetter(*names)
    if len(names) == 1:
        return (lambda event: (getter(event),)), positions
    return getter, positions


def event_to_row(event: AnyEvent, partition: int, offset: int) -> Row:
    getter, positions = _kind_columns(type(event))
    kind_values = list(KIND_DEFAULTS.values())
    if getter is not None:
        for position, value in zip(positions, getter(event), strict=True):
            kind_values[position] = value
    return (
        event.event_id,
        event.kind,
        event.occurred_at,
        event.campaign_id,
        event.message_id,
        event.recipient or "",
        event.list_id,
        *kind_values,
        event.schema_version,
        partition,
        offset,
    )


@functools.cache
def _without_column(cls: type) -> tuple[str, ...]:
    """The fields of an event class that no column of ``events`` holds (a migration must add them)."""
    return tuple(name for name in cls.__struct_fields__ if name not in COLUMNS)  # type: ignore[attr-defined]


def event_to_json(event: AnyEvent, partition: int, offset: int) -> bytes:
    """The event as one JSONEachRow line: its canonical JSON plus the Kafka coordinates.

    ClickHouse parses these lines in C++; building Python tuples and serializing them column by
    column in clickhouse-connect cost more than the rest of the sink together. Columns a kind lacks
    take the table's defaults (the values of KIND_DEFAULTS). A field no column holds is refused (the
    record goes to the dead-letter topic with the reason), never dropped. Re-encoding the decoded event
    keeps the line canonical whatever the producer sent.
    """
    missing = _without_column(type(event))
    if missing:
        raise DecodeError(f"events has no column for field(s) {', '.join(missing)} of {event.kind}: add a migration")
    return encode(event)[:-1] + b',"kafka_partition":%d,"kafka_offset":%d}' % (partition, offset)


# How every producer of this project writes an event: msgspec writes the tag first and then the fields in
# their declared order, so a known kind and the fields every kind must carry open the record. A record that
# shows them is handed to ClickHouse as it is; an id or time with an escape in it takes the strict path.
_CANONICAL_OPENING = re.compile(
    rb'\{"kind":"(?:'
    + b"|".join(re.escape(kind.value.encode()) for kind in EventKind)
    + rb')","event_id":"[^"\\]*","occurred_at":"[^"\\]*","campaign_id":"[^"\\]*","message_id":"'
)
_opening = _CANONICAL_OPENING.match


def raw_event_line(data: bytes, partition: int, offset: int) -> bytes | None:
    """The record itself as its JSONEachRow line, plus the Kafka coordinates, without decoding it in Python;
    None when it does not look as this project's producers write events (then it is decoded strictly).

    Decoding and re-encoding each event cost twice what the rest of the sink's Python did per row. ClickHouse
    parses the line anyway and refuses what its schema cannot hold: a field with no column, a value of the
    wrong type, a malformed line, a duplicated key (the Kafka coordinates among them). A refused batch is then
    mapped record by record with :func:`event_to_json`, which names what is wrong with each record it
    refuses (:mod:`sinks.salvage`). The kind and the fields every kind carries are checked here, because
    ClickHouse would fill a missing one with its default and an unknown kind would be stored as it is.
    One anchored regular expression checks them: 0.6 µs a record, against 1.4 µs for a search per field.
    """
    if _opening(data) is None or not data.endswith(b"}"):
        return None
    return data[:-1] + b',"kafka_partition":%d,"kafka_offset":%d}' % (partition, offset)


def stored_event(data: bytes) -> AnyEvent:
    """A record of the events topic as the sink stores it: a field its kind does not declare (a newer
    producer's) is refused with the reason, since the row could not keep it."""
    return decode_event(data, strict=True)


SUPPRESSION_COLUMNS: tuple[str, ...] = (
    "recipient",
    "suppressed",
    "reasons",
    "lists",
    "since",
    "caused_by",
    "changed_at",
    "kafka_partition",
    "kafka_offset",
)


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
    """How the records of one topic become rows of one table (decode raises DecodeError).

    ``json_rows``: ``to_row`` gives one JSONEachRow line (bytes) instead of a tuple in column order.
    ``fast_row``: the row without decoding the record, or None to take ``to_row``; the store checks what it
    lets through, and a batch the store refuses is mapped again with ``to_row`` alone.
    """

    table: str
    columns: tuple[str, ...]
    to_row: Callable[[bytes, int, int], MappedRow]
    json_rows: bool = False
    fast_row: Callable[[bytes, int, int], MappedRow | None] | None = None


EVENTS = TableMapping(
    "events",
    COLUMNS,
    lambda data, p, o: event_to_json(stored_event(data), p, o),
    json_rows=True,
    fast_row=raw_event_line,
)
SUPPRESSION_CHANGES = TableMapping(
    "suppression_changes",
    SUPPRESSION_COLUMNS,
    lambda data, p, o: suppression_change_to_row(decode_suppression_change(data), p, o),
)
