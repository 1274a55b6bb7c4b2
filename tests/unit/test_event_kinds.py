"""Every kind of event is handled, explicitly, by every part that decides by kind.

mypy checks the ``match`` statements (``assert_never``); this test checks the same at run time, for each
class of ``AnyEvent``: a kind added to the contract and forgotten by engagement, suppression, the sink's
columns or the report's SQL fails here. The last test shows that it would: a kind outside the contract is
refused by each of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from processors import engagement
from processors.block_monitor import BlockMonitor, BlockPolicy
from processors.suppression import EMPTY, Policy, apply_event
from schemas.codec import DecodeError, encode
from schemas.events import EVENT_CLASSES, Event, EventKind
from sinks.reports import report_columns
from sinks.rows import EVENTS, event_to_json, stored_event

AT = datetime(2026, 12, 2, 9, tzinfo=UTC)


def sample_value(info: msgspec.inspect.Type) -> Any:
    """A valid value of a required field, whatever its type."""
    match info:
        case msgspec.inspect.EnumType():
            return next(iter(info.cls)).value
        case msgspec.inspect.StrType():
            return "x"
        case msgspec.inspect.IntType() | msgspec.inspect.FloatType():
            return 1
        case msgspec.inspect.BoolType():
            return True
        case msgspec.inspect.DateTimeType():
            return AT.isoformat()
        case msgspec.inspect.UnionType():
            return sample_value(next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)))
    raise AssertionError(f"no sample for {info}")


def sample(cls: type[Event]) -> Any:
    data: dict[str, Any] = {
        "kind": cls.__struct_config__.tag,
        "event_id": f"e-{cls.__name__}",
        "occurred_at": AT.isoformat(),
        "campaign_id": "c",
        "message_id": "m",
        "recipient": "reader@example.org",
    }
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if field.required and field.name not in data:
            data[field.name] = sample_value(field.type)
    return stored_event(msgspec.json.encode(data))


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__struct_config__.tag)
def test_every_kind_is_handled_by_every_part(cls: type[Event]) -> None:
    event = sample(cls)
    kind = EventKind(event.kind)  # the kind is named in the enum the SQL and docs go by
    engagement.apply_event(engagement.EMPTY_MESSAGE, event)
    apply_event(EMPTY, event, Policy())
    BlockMonitor(BlockPolicy()).observe(event)
    assert EVENTS.to_row(encode(event), 0, 0)  # every field has a column
    report_columns(kind)


def test_the_contract_and_the_enum_name_the_same_kinds() -> None:
    assert {cls.__struct_config__.tag for cls in EVENT_CLASSES} == set(EventKind)


class Poll(Event, frozen=True, kw_only=True, tag="poll"):
    """A kind the contract does not have: what a new kind looks like before every part handles it."""

    question: str = ""


def test_a_kind_nobody_handles_is_refused_by_each_part() -> None:
    poll = Poll(event_id="p", occurred_at=AT, campaign_id="c", message_id="m", recipient="reader@example.org")
    with pytest.raises(AssertionError):
        engagement.apply_event(engagement.EMPTY_MESSAGE, poll)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        apply_event(EMPTY, poll, Policy())  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        EVENTS.to_row(encode(poll), 0, 0)
    with pytest.raises(DecodeError, match=r"no column for field\(s\) question of poll"):
        event_to_json(poll, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EventKind("poll")


def test_a_field_the_sink_cannot_store_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    open_event = msgspec.json.decode(encode(sample(EVENT_CLASSES[0])))
    with pytest.raises(DecodeError, match="unknown field `device`"):
        EVENTS.to_row(msgspec.json.encode({**open_event, "device": "tablet"}), 0, 0)
