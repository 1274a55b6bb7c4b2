"""Which reports by mail may suppress: only those tied to a message we sent to that recipient.

Real reports from the corpus (a Postfix DSN, an ARF complaint), sent to or quoting the bounce address
the sender made for the message, or quoting the message's own unsubscribe link, against forgeries of
each: a bare message id, a bounce address made for someone else or under another secret, a token
altered or made for another recipient.
"""

from __future__ import annotations

from pathlib import Path

from producers.bounce_intake import Attribution, Keeper, events_from_mail
from producers.bounce_mail import parse_mail
from schemas.attribution import BounceAddresses
from schemas.events import Bounce, Complaint, utcnow
from schemas.tokens import LinkKind, TokenClaims, TokenCodec

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
SECRETS = ["current-secret", "previous-secret"]
ATTRIBUTION = Attribution(SECRETS)
DSN = (SAMPLES / "postfix_gmail_01.eml").read_bytes()
ARF = (SAMPLES / "arf_abuse.eml").read_bytes()
ARF_MESSAGE, ARF_RECIPIENT = "cafebabecafebabecafebabecafebabe", "angry.reader@example.com"


def dsn_recipient() -> tuple[str, str]:
    parsed = parse_mail(DSN)
    assert parsed.message_id and parsed.records[0].recipient
    return parsed.message_id, parsed.records[0].recipient


def attributed(raw: bytes, envelope_to: list[str] | None = None) -> list[bool]:
    events = events_from_mail(parse_mail(raw, envelope_to or []), utcnow(), ATTRIBUTION)
    return [e.attributed for e in events if isinstance(e, Bounce | Complaint)]


def test_a_dsn_sent_to_the_bounce_address_made_for_its_recipient_is_attributed() -> None:
    message, recipient = dsn_recipient()
    verp = BounceAddresses(SECRETS).address(message, recipient, "bounces.example.com")
    assert attributed(DSN, [verp]) == [True]
    # Made under the previous secret (a rotation in progress): still ours.
    assert attributed(DSN, [BounceAddresses(SECRETS[1:]).address(message, recipient, "bounces.example.com")]) == [True]


def test_forged_dsns_are_recorded_unattributed() -> None:
    message, recipient = dsn_recipient()
    for envelope in (
        [f"bounces+{message}@bounces.example.com"],  # the old bare form, or a guess
        [BounceAddresses(SECRETS).address(message, "someone.else@example.org", "bounces.example.com")],
        [BounceAddresses(["attackers-secret"]).address(message, recipient, "bounces.example.com")],
        [],
    ):
        assert attributed(DSN, envelope) == [False], envelope


def test_an_arf_complaint_is_attributed_by_the_reported_messages_unsubscribe_link_or_return_path() -> None:
    codec = TokenCodec(SECRETS)
    token = codec.mint(TokenClaims(LinkKind.UNSUBSCRIBE, ARF_MESSAGE, "autumn-2026", "news", ARF_RECIPIENT))
    with_link = ARF.replace(
        b"X-Mailpulse-Campaign: autumn-2026",
        b"X-Mailpulse-Campaign: autumn-2026\nList-Unsubscribe: <https://t.example.com/u/"
        + token.encode()
        + b">, <mailto:unsubscribe@example.com?subject=unsubscribe>",
    )
    (event,) = events_from_mail(parse_mail(with_link), utcnow(), ATTRIBUTION)
    assert isinstance(event, Complaint) and event.attributed and event.campaign_id == "autumn-2026"
    verp = BounceAddresses(SECRETS).address(ARF_MESSAGE, ARF_RECIPIENT, "bounces.example.com")
    with_return_path = ARF.replace(b"From: Mailpulse Demo", f"Return-Path: <{verp}>\nFrom: Mailpulse Demo".encode())
    assert attributed(with_return_path) == [True]
    # ARF's own Original-Mail-From names the envelope sender too.
    assert attributed(ARF.replace(f"bounces+{ARF_MESSAGE}@".encode(), verp.split("@")[0].encode() + b"@")) == [True]

    other = codec.mint(TokenClaims(LinkKind.UNSUBSCRIBE, ARF_MESSAGE, "autumn-2026", "news", "someone@example.org"))
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    for forged in (
        other,
        tampered,
        TokenCodec(["attackers-secret"]).mint(
            TokenClaims(LinkKind.UNSUBSCRIBE, ARF_MESSAGE, "x", "news", ARF_RECIPIENT)
        ),
    ):
        mail = ARF.replace(
            b"X-Mailpulse-Campaign: autumn-2026",
            b"X-Mailpulse-Campaign: autumn-2026\nList-Unsubscribe: <https://t.example.com/u/" + forged.encode() + b">",
        )
        assert attributed(mail) == [False]
    assert attributed(ARF) == [False]  # the corpus sample as it is: a bare message id


def test_kept_mail_is_capped_per_hour_and_on_disk(tmp_path: Path) -> None:
    keeper = Keeper(tmp_path / "kept", per_hour=3, max_bytes=10_000)
    assert all(keeper.keep(b"x" * 100, now=1000.0 + i) for i in range(3))
    assert keeper.keep(b"x" * 100, now=1010.0) is None  # the fourth within the hour
    assert keeper.keep(b"x" * 100, now=1000.0 + 3601) is not None  # an hour after the first
    assert keeper.keep(b"x" * 20_000, now=9000.0) is None  # over the space left
    assert keeper.kept == 4 and keeper.not_kept == 2
    # The space on disk counts what an earlier run kept.
    assert Keeper(tmp_path / "kept", per_hour=100, max_bytes=450).keep(b"x" * 100) is None
