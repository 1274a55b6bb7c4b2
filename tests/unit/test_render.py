from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import msgspec

from processors.render import RenderContext, render_message
from schemas.attribution import BounceAddresses, verp_mark
from schemas.events import SendRequest, TrackingMode
from schemas.mailto import MailtoAddresses
from schemas.tokens import LinkKind, TokenCodec

CODEC = TokenCodec(["k"])
CTX = RenderContext(
    CODEC,
    "https://t.example.net",
    "bounces.example.com",
    BounceAddresses(["k"]),
    "unsub.example.com",
    MailtoAddresses(["k"]),
)
REQUEST = SendRequest(
    message_id="0123456789abcdef0123456789abcdef",
    campaign_id="autumn",
    recipient="reader@example.org",
    list_id="news",
    from_address="News <news@example.com>",
    subject="Autumn",
    html='<html><body><a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a></body></html>',
    text="Sale: https://shop.example.com/sale",
    enqueued_at=datetime(2026, 11, 26, tzinfo=UTC),
)


def parse(request: SendRequest) -> email.message.EmailMessage:
    rendered = render_message(request, CTX)
    return rendered.parsed()


def test_headers_required_by_rfc8058_and_bulk_sender_rules() -> None:
    msg = parse(REQUEST)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_link, mailto = [p.strip(" <>") for p in str(msg["List-Unsubscribe"]).split(",")]
    assert https_link.startswith("https://t.example.net/u/")
    # The message's own mailto: address, naming no address, and read back to this message alone.
    address = mailto.removeprefix("mailto:").removesuffix("?subject=unsubscribe")
    assert address.endswith("@unsub.example.com") and "reader" not in address
    assert MailtoAddresses(["k"]).message_id(address) == REQUEST.message_id
    assert len(address.partition("@")[0]) <= 64
    claims = CODEC.read(https_link.rsplit("/", 1)[1], LinkKind.UNSUBSCRIBE)
    assert claims.recipient == "reader@example.org" and claims.list_id == "news"
    envelope_from = render_message(REQUEST, CTX).envelope_from
    # The bounce address names the message and carries a mac of it and its recipient (no address).
    assert re.fullmatch(r"bounces\+0123456789abcdef0123456789abcdef\.[0-9a-f]{20}@bounces\.example\.com", envelope_from)
    assert len(envelope_from.split("@")[0]) <= 64 and REQUEST.recipient not in envelope_from
    mark = verp_mark(envelope_from)
    assert mark is not None and BounceAddresses(["k"]).verifies(mark, REQUEST.recipient.upper())
    assert not BounceAddresses(["k"]).verifies(mark, "someone.else@example.org")
    assert not BounceAddresses(["other"]).verifies(mark, REQUEST.recipient)
    assert msg["Return-Path"] is None  # the receiving server adds it from the envelope
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "multipart/alternative"


def test_full_tracking_rewrites_links_and_adds_pixel() -> None:
    msg = parse(REQUEST)
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "shop.example.com" not in html
    token = html.split('href="https://t.example.net/c/')[1].split('"')[0]
    claims = CODEC.read(token, LinkKind.CLICK)
    assert claims.url == "https://shop.example.com/sale?a=1&b=2" and claims.recipient == "reader@example.org"
    assert '<img src="https://t.example.net/o/' in html
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://t.example.net/c/" in text and "Unsubscribe: https://t.example.net/u/" in text


def test_a_url_in_both_parts_gets_one_token_and_each_url_its_own() -> None:
    request = msgspec.structs.replace(
        REQUEST,
        html='<html><body><a href="https://a.example.com/">A</a> <a href="https://b.example.com/">B</a></body></html>',
        text="A: https://a.example.com/ B: https://b.example.com/",
    )
    msg = parse(request)
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    in_html = [part.split('"')[0] for part in html.split('href="https://t.example.net/c/')[1:]]
    in_text = [part.split()[0] for part in text.split("https://t.example.net/c/")[1:]]
    assert in_html == in_text and len(set(in_html)) == 2
    urls = [CODEC.read(token, LinkKind.CLICK).url for token in in_html]
    assert urls == ["https://a.example.com/", "https://b.example.com/"]


def test_aggregate_tokens_do_not_name_the_recipient() -> None:
    msg = parse(msgspec.structs.replace(REQUEST, tracking=TrackingMode.AGGREGATE))
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    pixel = html.split('src="https://t.example.net/o/')[1].split(".gif")[0]
    assert CODEC.read(pixel, LinkKind.OPEN).recipient is None


def test_tracking_off_keeps_links_and_adds_no_pixel() -> None:
    msg = parse(msgspec.structs.replace(REQUEST, tracking=TrackingMode.OFF))
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "https://shop.example.com/sale" in html and "/o/" not in html and "/c/" not in html
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_non_ascii_headers_and_bodies_survive_the_round_trip() -> None:
    text = "Grüße aus Köln\n.a line starting with a dot\n" + "long " * 60 + "\n\ttabbed = equals\n"
    request = msgspec.structs.replace(
        REQUEST,
        subject="Herbst-Angebote für Sie: 20 % Rabatt 🍂",
        from_address="Böse Bäckerei <news@example.com>",
        text=text,
        html="<html><body><p>Grüße, naïve café</p></body></html>",
        tracking=TrackingMode.OFF,
    )
    rendered = render_message(request, CTX)
    assert rendered.data.isascii()  # quoted-printable bodies and encoded-word headers: 7-bit safe
    assert all(len(line) <= 998 for line in rendered.data.split(b"\r\n"))
    msg = rendered.parsed()
    assert msg["Subject"] == request.subject
    assert msg["From"].addresses[0].display_name == "Böse Bäckerei"
    plain = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert plain.replace("\r\n", "\n").startswith(text)
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Grüße, naïve café" in html
    assert not msg.defects and all(not part.defects for part in msg.walk())


def test_a_line_break_in_a_header_value_is_refused() -> None:
    import pytest

    from processors.render import RenderError

    with pytest.raises(RenderError, match="Subject"):
        render_message(msgspec.structs.replace(REQUEST, subject="hi\r\nBcc: victim@example.org"), CTX)


def test_the_date_header_is_the_email_packages() -> None:
    from datetime import timedelta, timezone
    from email.utils import format_datetime

    from processors.render import _date_header

    start = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)
    for hours in range(0, 24 * 400, 37):  # every weekday and month, hours and minutes
        when = start + timedelta(hours=hours, minutes=hours % 60)
        assert _date_header(when) == format_datetime(when)
    elsewhere = datetime(2026, 3, 9, 8, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert _date_header(elsewhere) == format_datetime(elsewhere) == "Mon, 09 Mar 2026 08:05:00 -0500"
    assert parse(REQUEST)["Date"].datetime == REQUEST.enqueued_at
