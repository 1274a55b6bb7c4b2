"""The bounce and complaint sample set: shapes that Postfix, Exim, Office 365, Gmail, Yahoo, qmail and an
ARF reporter really send, each with its expected recipient, class and status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.bounce_mail import Outcome, classify_status, parse_mail

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    expected = EXPECTED[name]
    parsed = parse_mail((SAMPLES / name).read_bytes())
    assert parsed.report == expected["report"]
    assert [[r.recipient, str(r.outcome), r.status] for r in parsed.records] == expected["records"]
    assert parsed.message_id == expected["message_id"]
    assert parsed.campaign_id == expected["campaign_id"]


def test_arf_carries_the_feedback_type() -> None:
    (record,) = parse_mail((SAMPLES / "arf_abuse.eml").read_bytes()).records
    assert record.feedback_type == "abuse"


def test_envelope_recipient_attributes_a_bounce_without_headers() -> None:
    raw = (SAMPLES / "postfix_delayed.eml").read_bytes().replace(b"To: bounces+", b"To: someone-else+")
    parsed = parse_mail(raw, envelope_to=["bounces+00000000000000000000000000000001@bounces.example.com"])
    assert parsed.message_id == "00000000000000000000000000000001"


@pytest.mark.parametrize(
    ("status", "action", "diagnostic", "outcome"),
    [
        ("5.1.1", "failed", "", Outcome.HARD),
        ("4.4.1", "failed", "", Outcome.SOFT),
        ("5.2.2", "failed", "", Outcome.SOFT),
        ("5.7.1", "failed", "", Outcome.HARD),
        ("4.4.1", "delayed", "", Outcome.DELAY),
        ("2.0.0", "delivered", "", None),
        ("5.0.0", "failed", "552 mailbox is full", Outcome.SOFT),
    ],
)
def test_rfc3463_classes(status: str, action: str, diagnostic: str, outcome: Outcome | None) -> None:
    assert classify_status(status, action, diagnostic) == outcome


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff garbage", b"Content-Type: multipart/report; report-type=delivery-status\n\nno parts here"]
)
def test_garbage_never_raises(raw: bytes) -> None:
    assert parse_mail(raw).records == []
