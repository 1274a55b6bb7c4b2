"""Compose the MIME message for one send request (pure).

Per tracking mode: ``full`` mints tokens naming the recipient, ``aggregate``
tokens without it, ``off`` adds no pixel and rewrites no link. Unsubscribe
links always name the recipient (the unsubscribe needs it); they are opaque.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from schemas.attribution import CAMPAIGN_HEADER, MESSAGE_HEADER, verp_address
from schemas.events import SendRequest, TrackingMode
from schemas.tokens import LinkKind, TokenClaims, TokenCodec

_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""(?<![\w/])(https?://[^\s<>"')\]]+)""")
UNSUBSCRIBE_PLACEHOLDER = "$unsubscribe_url"


@dataclass(frozen=True)
class RenderContext:
    tokens: TokenCodec
    public_base_url: str
    unsubscribe_mailto: str
    bounce_domain: str


@dataclass(frozen=True)
class RenderedMessage:
    message: EmailMessage
    envelope_from: str
    recipient: str


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


def rewrite_html(body: str, request: SendRequest, ctx: RenderContext) -> str:
    def replace(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3))
        token = ctx.tokens.mint(_claims(request, LinkKind.CLICK, url))
        return f"{match.group(1)}{match.group(2)}{_link(ctx, 'c', token)}{match.group(2)}"

    return _HREF.sub(replace, body)


def rewrite_text(body: str, request: SendRequest, ctx: RenderContext) -> str:
    def replace(match: re.Match[str]) -> str:
        url = match.group(1)
        if url.startswith(ctx.public_base_url):
            return url
        return _link(ctx, "c", ctx.tokens.mint(_claims(request, LinkKind.CLICK, url)))

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
        body_html = rewrite_html(body_html, request, ctx) if body_html else body_html
        text = rewrite_text(text, request, ctx) if text else text
        if body_html:
            pixel = _link(ctx, "o", ctx.tokens.mint(_claims(request, LinkKind.OPEN))) + ".gif"
            body_html = _with_pixel(body_html, pixel)
    text = _with_unsubscribe(text or "", unsubscribe_url, is_html=False)
    if body_html:
        body_html = _with_unsubscribe(body_html, unsubscribe_url, is_html=True)

    _, from_addr = parseaddr(request.from_address)
    domain = from_addr.rpartition("@")[2] or "localhost"
    envelope_from = verp_address(request.message_id, ctx.bounce_domain)

    msg = EmailMessage()
    msg["From"] = request.from_address
    msg["To"] = Address(addr_spec=request.recipient)
    msg["Subject"] = request.subject
    msg["Date"] = format_datetime(request.enqueued_at)
    msg["Message-ID"] = f"<{request.message_id}.{request.attempt}@{domain}>"
    msg["List-Id"] = f"<{request.list_id}.{domain}>"
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <mailto:{ctx.unsubscribe_mailto}?subject=unsubscribe>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Return-Path"] = f"<{envelope_from}>"
    msg[CAMPAIGN_HEADER] = request.campaign_id
    msg[MESSAGE_HEADER] = request.message_id
    msg.set_content(text)
    if body_html:
        msg.add_alternative(body_html, subtype="html")
    return RenderedMessage(message=msg, envelope_from=envelope_from, recipient=request.recipient)
