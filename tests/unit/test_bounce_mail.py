"""The bounce corpus through the mail parser (pure): every sample's report kind, recipients, reasons and
attribution as ``tests/fixtures/bounces/expected.json`` labels them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.bounce_intake import Attribution, events_from_mail
from producers.bounce_mail import parse_mail
from producers.bounce_records import RecordKind, Report
from schemas.events import Bounce, Deferred, utcnow

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
ATTRIBUTION = Attribution(["k"])


def labels(name: str) -> list[dict[str, str | None]]:
    parsed = parse_mail((SAMPLES / name).read_bytes())
    return [
        {"recipient": r.recipient, "reason": "delayed" if r.kind is RecordKind.DELAY else r.reason}
        for r in parsed.records
    ]


def test_the_corpus_is_large_and_varied() -> None:
    mtas = {e["mta"] for e in EXPECTED.values()}
    providers = {e["provider"] for e in EXPECTED.values()}
    assert len(EXPECTED) >= 150 and len(mtas | providers) >= 25
    assert all((SAMPLES / name).is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    expected = EXPECTED[name]
    parsed = parse_mail((SAMPLES / name).read_bytes())
    assert parsed.report == expected["report"]
    assert labels(name) == expected["records"]
    assert parsed.message_id == expected["message_id"]
    assert parsed.campaign_id == expected["campaign_id"]


def test_arf_carries_the_feedback_type_and_only_complaints_complain() -> None:
    (record,) = parse_mail((SAMPLES / "arf_abuse.eml").read_bytes()).records
    assert record.kind is RecordKind.COMPLAINT and record.feedback_type == "abuse"
    dmarc = parse_mail((SAMPLES / "arf_dmarc_forensic_01.eml").read_bytes())
    assert dmarc.report is Report.ARF and dmarc.records == []


def test_envelope_recipient_attributes_a_bounce_without_headers() -> None:
    raw = (SAMPLES / "postfix_delayed.eml").read_bytes().replace(b"To: bounces+", b"To: someone-else+")
    parsed = parse_mail(raw, envelope_to=["bounces+00000000000000000000000000000001@bounces.example.com"])
    assert parsed.message_id == "00000000000000000000000000000001"


def test_a_redelivered_report_is_the_same_event() -> None:
    raw = (SAMPLES / "postfix_gmail_01.eml").read_bytes()
    first, again = (events_from_mail(parse_mail(raw), utcnow(), ATTRIBUTION) for _ in range(2))
    assert [e.event_id for e in first] == [e.event_id for e in again] and len(first) == 1
    other = (SAMPLES / "postfix_gmail_02.eml").read_bytes()
    assert events_from_mail(parse_mail(other), utcnow(), ATTRIBUTION)[0].event_id != first[0].event_id


def test_events_carry_reason_class_and_provider() -> None:
    (bounce,) = events_from_mail(parse_mail((SAMPLES / "postfix_office365_02.eml").read_bytes()), utcnow(), ATTRIBUTION)
    assert isinstance(bounce, Bounce) and (bounce.reason, bounce.bounce_class) == ("blocked", "block")
    (delay,) = events_from_mail(parse_mail((SAMPLES / "postfix_delay_01.eml").read_bytes()), utcnow(), ATTRIBUTION)
    assert isinstance(delay, Deferred) and delay.reason == "network_error"
    (gmail,) = events_from_mail(parse_mail((SAMPLES / "postfix_gmail_01.eml").read_bytes()), utcnow(), ATTRIBUTION)
    assert isinstance(gmail, Bounce) and gmail.mailbox_provider == "gmail" and gmail.bounce_class == "hard"


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff garbage", b"Content-Type: multipart/report; report-type=delivery-status\n\nno parts here"]
)
def test_garbage_never_raises(raw: bytes) -> None:
    assert parse_mail(raw).records == []
