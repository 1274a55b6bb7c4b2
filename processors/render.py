"""Compose the MIME message for one send request (pure).

Per tracking mode: ``full`` mints tokens naming the recipient, ``aggregate``
tokens without it, ``off`` adds no pixel and rewrites no link. Unsubscribe
links always name the recipient (the unsubscribe needs it); they are opaque.

The message is written as bytes from a fixed layout (multipart/alternative,
quoted-printable UTF-8 parts, RFC 2047 headers where needed) rather than built
with ``email.message.EmailMessage``: the email package's header objects and
generator cost about a millisecond a message, most of the sender's time.
Every message still parses with the email package (tested).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import functools
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from schemas.attribution import CAMPAIGN_HEADER, MESSAGE_HEADER, BounceAddresses
from schemas.events import SendRequest, TrackingMode
from schemas.mailto import MailtoAddresses
from schemas.tokens import LinkKind, TokenClaims, TokenCodec

_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""(?<![\w/])(https?://[^\s<>"')\]]+)""")
UNSUBSCRIBE_PLACEHOLDER = "$unsubscribe_url"


@dataclass(frozen=True)
class RenderContext:
    tokens: TokenCodec
    public_base_url: str
    bounce_domain: str
    bounce_addresses: BounceAddresses
    unsubscribe_domain: str
    mailto: MailtoAddresses


class RenderError(ValueError):
    """A field would break the message's header structure (a line break in a header value)."""


@dataclass(frozen=True)
class RenderedMessage:
    data: bytes  # the whole message, CRLF line endings, ready for SMTP DATA
    envelope_from: str
    recipient: str

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, _class=EmailMessage, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


def _claims(request: SendRequest, kind: LinkKind, url: str | None = None) -> TokenClaims:
    identifies = kind is LinkKind.UNSUBSCRIBE or request.tracking is TrackingMode.FULL
    return TokenClaims(
        kind=kind,
        message_id=request.message_id,
        campaign_id=request.campaign_id,
        list_id=request.list_id,
        recipient=request.recipient if identifies else None,
        url=url,
        tracking=request.tracking,
    )


def _link(ctx: RenderContext, path: str, token: str) -> str:
    return f"{ctx.public_base_url}/{path}/{token}"


def click_links(request: SendRequest, ctx: RenderContext) -> Callable[[str], str]:
    """The tracked link for each URL of one message; a URL in both the HTML and the text part (most
    of them) gets one token, minted once (a token costs more than the rest of its rewriting)."""
    made: dict[str, str] = {}

    def link(url: str) -> str:
        held = made.get(url)
        if held is None:
            held = made[url] = _link(ctx, "c", ctx.tokens.mint(_claims(request, LinkKind.CLICK, url)))
        return held

    return link


def rewrite_html(body: str, link: Callable[[str], str]) -> str:
    def replace(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3))
        return f"{match.group(1)}{match.group(2)}{link(url)}{match.group(2)}"

    return _HREF.sub(replace, body)


def rewrite_text(body: str, link: Callable[[str], str], public_base_url: str) -> str:
    def replace(match: re.Match[str]) -> str:
        url = match.group(1)
        if url.startswith(public_base_url):
            return url
        return link(url)

    return _TEXT_URL.sub(replace, body)


def _with_pixel(body: str, pixel_url: str) -> str:
    img = f'<img src="{pixel_url}" width="1" height="1" alt="" style="display:block;border:0">'
    index = body.lower().rfind("</body>")
    return body[:index] + img + body[index:] if index >= 0 else body + img


def _with_unsubscribe(body: str, url: str, is_html: bool) -> str:
    if UNSUBSCRIBE_PLACEHOLDER in body:
        return body.replace(UNSUBSCRIBE_PLACEHOLDER, html.escape(url) if is_html else url)
    # Every message carries a visible opt-out (CAN-SPAM), even if the template forgot it.
    if is_html:
        footer = f'<p style="font-size:12px;color:#666"><a href="{html.escape(url)}">Unsubscribe</a></p>'
        index = body.lower().rfind("</body>")
        return body[:index] + footer + body[index:] if index >= 0 else body + footer
    return f"{body.rstrip()}\n\n--\nUnsubscribe: {url}\n"


def render_message(request: SendRequest, ctx: RenderContext) -> RenderedMessage:
    unsubscribe_url = _link(ctx, "u", ctx.tokens.mint(_claims(request, LinkKind.UNSUBSCRIBE)))
    text, body_html = request.text, request.html
    if request.tracking is not TrackingMode.OFF:
        link = click_links(request, ctx)
        body_html = rewrite_html(body_html, link) if body_html else body_html
        text = rewrite_text(text, link, ctx.public_base_url) if text else text
        if body_html:
            pixel = _link(ctx, "o", ctx.tokens.mint(_claims(request, LinkKind.OPEN))) + ".gif"
            body_html = _with_pixel(body_html, pixel)
    text = _with_unsubscribe(text or "", unsubscribe_url, is_html=False)
    if body_html:
        body_html = _with_unsubscribe(body_html, unsubscribe_url, is_html=True)

    from_header, domain = _sender(request.from_address)
    envelope_from = ctx.bounce_addresses.address(request.message_id, request.recipient, ctx.bounce_domain)
    # Its own mailto: address: mail to it unsubscribes this message's recipient, whoever sends it.
    mailto = ctx.mailto.address(request.message_id, ctx.unsubscribe_domain)
    # The VERP address is the envelope sender; the receiving server records it as Return-Path.
    boundary = f"=_mp_{request.message_id}_{request.attempt}"  # "=_" never occurs in quoted-printable
    headers = [
        ("From", from_header),
        ("To", request.recipient),
        ("Subject", _header_text(request.subject)),
        ("Date", _date_header(request.enqueued_at)),
        ("Message-ID", f"<{request.message_id}.{request.attempt}@{domain}>"),
        ("List-Id", f"<{request.list_id}.{domain}>"),
        ("List-Unsubscribe", f"<{unsubscribe_url}>,\r\n <mailto:{mailto}?subject=unsubscribe>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        (CAMPAIGN_HEADER, request.campaign_id),
        (MESSAGE_HEADER, request.message_id),
        ("MIME-Version", "1.0"),
    ]
    lines = []
    for name, value in headers:
        unfolded = value.replace("\r\n ", "")  # folding we did ourselves is allowed
        if "\n" in unfolded or "\r" in unfolded:
            raise RenderError(f"line break in the {name} header")
        lines.append(f"{name}: {value}")
    head = "\r\n".join(lines).encode("utf-8")
    if not body_html:
        return RenderedMessage(head + b"\r\n" + _text_part(text, "plain"), envelope_from, request.recipient)
    data = b"".join(
        [
            head,
            f'\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
            f"--{boundary}\r\n".encode(),
            _text_part(text, "plain"),
            f"\r\n--{boundary}\r\n".encode(),
            _text_part(body_html, "html"),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return RenderedMessage(data, envelope_from, request.recipient)


@functools.lru_cache(maxsize=1024)
def _sender(from_address: str) -> tuple[str, str]:
    """The From header and the domain of Message-ID and List-Id: one parse per campaign, not per message
    (the email package's address parser costs 9 us)."""
    display_name, address = parseaddr(from_address)
    return formataddr((display_name, address), charset="utf-8"), address.rpartition("@")[2] or "localhost"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UTC = timedelta(0)


def _date_header(when: datetime) -> str:
    """``email.utils.format_datetime`` of a UTC time in a fifth of its time; other times go to it."""
    if when.utcoffset() != _UTC:
        return format_datetime(when)
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} +0000"
    )


def _header_text(value: str) -> str:
    """The value as is when it is short ASCII, else RFC 2047 encoded words, folded."""
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8", maxlinelen=76, header_name="Subject").encode(linesep="\r\n")


def _text_part(body: str, subtype: str) -> bytes:
    """One UTF-8 text part, quoted-printable (binascii's C encoder), with its MIME headers."""
    crlf = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not crlf.endswith("\r\n"):
        crlf += "\r\n"
    encoded = binascii.b2a_qp(crlf.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    ).encode() + encoded
