"""JSON codec for events and commands; malformed input raises :class:`DecodeError`."""

from __future__ import annotations

from typing import Any, TypeVar, Union

import msgspec

from schemas.alerts import BlockAlert, ComplaintAlert
from schemas.events import EVENT_CLASSES, AnyEvent, CampaignPartial, SendRequest, SuppressionChange

T = TypeVar("T")


class DecodeError(ValueError):
    """The bytes are not a valid message of the expected contract."""


_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(AnyEvent)
# The same kinds refusing a field they do not declare (a newer producer's): for a reader that keeps every
# field, for which dropping one silently would lose it (the sink). Instances are of subclasses of the
# event classes: isinstance, match and encode treat them as the events they are.
_STRICT = tuple(
    type(cls.__name__, (cls,), {}, forbid_unknown_fields=True, tag=cls.__struct_config__.tag) for cls in EVENT_CLASSES
)
_strict_event_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[_STRICT])  # noqa: UP007
_send_decoder = msgspec.json.Decoder(SendRequest)
_suppression_decoder = msgspec.json.Decoder(SuppressionChange)
_partial_decoder = msgspec.json.Decoder(CampaignPartial)
_alert_decoder = msgspec.json.Decoder(ComplaintAlert)
_block_alert_decoder = msgspec.json.Decoder(BlockAlert)


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes, what: str) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed {what} JSON: {exc}") from None


def decode_event(data: bytes, strict: bool = False) -> AnyEvent:
    """One event of any kind; ``strict``: a field its kind does not declare is an error, not skipped."""
    if strict:
        try:
            return _checked(_decode(_strict_event_decoder, data, "event"))
        except DecodeError:
            # The strict decoder stops at the first field it does not know, which may hide that the record
            # is malformed further on: the lenient one names that, and only an unknown field is left.
            decode_event(data)
            raise
    return _checked(_decode(_event_decoder, data, "event"))


def _checked(event: AnyEvent) -> AnyEvent:
    if event.occurred_at.tzinfo is None or event.occurred_at.utcoffset():
        raise DecodeError("invalid event: occurred_at must be in UTC")
    return event


def decode_send_request(data: bytes) -> SendRequest:
    request: SendRequest = _decode(_send_decoder, data, "send request")
    return request


def decode_suppression_change(data: bytes) -> SuppressionChange:
    change: SuppressionChange = _decode(_suppression_decoder, data, "suppression change")
    return change


def decode_campaign_partial(data: bytes) -> CampaignPartial:
    partial: CampaignPartial = _decode(_partial_decoder, data, "campaign partial")
    return partial


def decode_complaint_alert(data: bytes) -> ComplaintAlert:
    alert: ComplaintAlert = _decode(_alert_decoder, data, "complaint alert")
    return alert


def decode_block_alert(data: bytes) -> BlockAlert:
    alert: BlockAlert = _decode(_block_alert_decoder, data, "block alert")
    return alert
