"""JSON codec for events and commands; malformed input raises :class:`DecodeError`."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from schemas.events import AnyEvent, BlockAlert, CampaignPartial, ComplaintAlert, SendRequest, SuppressionChange

T = TypeVar("T")


class DecodeError(ValueError):
    """The bytes are not a valid message of the expected contract."""


_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(AnyEvent)
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


def decode_event(data: bytes) -> AnyEvent:
    event: AnyEvent = _decode(_event_decoder, data, "event")
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
