from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.codec import DecodeError, decode_event, decode_send_request, encode
from schemas.events import AgentClass, Bounce, BounceClass, Open, SendSkipped, new_event_id


def test_every_kind_round_trips_to_its_class() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    events = [
        Open(
            event_id=new_event_id(),
            occurred_at=now,
            campaign_id="c",
            message_id="m",
            recipient="a@b.org",
            agent_class=AgentClass.GOOGLE_PROXY,
        ),
        Bounce(
            event_id=new_event_id(),
            occurred_at=now,
            campaign_id="c",
            message_id="m",
            bounce_class=BounceClass.SOFT,
            status="4.2.2",
        ),
        SendSkipped(event_id=new_event_id(), occurred_at=now, campaign_id="c", message_id="m", reason="complaint"),
    ]
    for event in events:
        decoded = decode_event(encode(event))
        assert decoded == event and type(decoded) is type(event)
    assert b'"kind":"send.skipped"' in encode(events[2])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "malformed event JSON"),
        (b'{"kind":"teleport","event_id":"x"}', "invalid event"),
        (b'{"kind":"open","event_id":"x","campaign_id":"c","message_id":"m"}', "occurred_at"),
        (
            b'{"kind":"open","event_id":"x","occurred_at":"2026-01-01T00:00:00+02:00","campaign_id":"c",'
            b'"message_id":"m"}',
            "UTC",
        ),
        (
            b'{"kind":"bounce","event_id":"x","occurred_at":"2026-01-01T00:00:00Z","campaign_id":"c",'
            b'"message_id":"m","bounce_class":"medium"}',
            "invalid event",
        ),
    ],
)
def test_malformed_input_is_refused_with_a_clear_error(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_event(payload)


def test_send_request_requires_its_fields() -> None:
    with pytest.raises(DecodeError, match="send request"):
        decode_send_request(b'{"message_id":"m"}')
