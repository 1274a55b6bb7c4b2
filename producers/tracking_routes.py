"""Public routes: open pixel, click redirect, unsubscribe page and RFC 8058 one-click POST."""

from __future__ import annotations

import html
import logging
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from producers.context import EdgeContext
from producers.publisher import PublishError
from producers.visits import click_event, open_event
from schemas.events import Unsubscribe, UnsubscribeScope, new_event_id, utcnow
from schemas.tokens import LinkKind, TokenClaims, TokenError, TokenExpired

log = logging.getLogger(__name__)

# A 1x1 transparent GIF89a.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache"}


def _ctx(request: Request) -> EdgeContext:
    ctx: EdgeContext = request.app.state.edge
    return ctx


def _claims(request: Request, kind: LinkKind, route: str) -> TokenClaims | Response:
    ctx = _ctx(request)
    try:
        return ctx.tokens.read(request.path_params["token"], kind)
    except TokenExpired as exc:
        ctx.metrics.rejected_tokens.labels(route).inc()
        return PlainTextResponse(f"{exc}\n", status_code=410, headers=NO_STORE)
    except TokenError as exc:
        ctx.metrics.rejected_tokens.labels(route).inc()
        return PlainTextResponse(f"{exc}\n", status_code=404, headers=NO_STORE)


def _client(request: Request) -> tuple[str, str]:
    user_agent = request.headers.get("user-agent", "")[:512]
    ip = request.client.host if request.client else ""
    return user_agent, ip


_PIXEL_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"image/gif"),
        (b"content-length", str(len(PIXEL_GIF)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()],
    ],
}
_PIXEL_BODY = {"type": "http.response.body", "body": PIXEL_GIF}


class OpenPixel:
    """The pixel as a plain ASGI endpoint: the hottest route skips Request and Response objects.

    With the helper process on (the default) it only authenticates the token and queues the hit;
    otherwise it decrypts, builds and publishes the open here.
    """

    __name__ = "open_pixel"  # the metrics label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: EdgeContext = scope["app"].state.edge
        if ctx.pixels is None:
            await request_response(open_pixel)(scope, receive, send)
            return
        await self.serve(ctx, scope["path_params"]["token"], scope, receive, send)

    @staticmethod
    async def serve(ctx: EdgeContext, token: str, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one pixel request through the helper (``ctx.pixels``); returns the status sent."""
        assert ctx.pixels is not None
        authenticated = ctx.tokens.authenticate(token)
        if authenticated is None:
            ctx.metrics.rejected_tokens.labels("open").inc()
            response = PlainTextResponse("invalid or tampered token\n", status_code=404, headers=NO_STORE)
            await response(scope, receive, send)
            return 404
        user_agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value[:512].decode("latin-1")
                break
        client = scope.get("client")
        ctx.pixels.submit((authenticated.data, authenticated.key, user_agent, client[0] if client else "", time.time()))
        await send(_PIXEL_START)
        await send(_PIXEL_BODY)
        return 200


def pixel_token(path: str) -> str | None:
    """The token of an open-pixel path (``/o/{token}.gif``, as the route matches it), else None."""
    if path.startswith("/o/") and path.endswith(".gif"):
        token = path[3:-4]
        if token and "/" not in token:
            return token
    return None


async def open_pixel(request: Request) -> Response:
    claims = _claims(request, LinkKind.OPEN, "open")
    if isinstance(claims, Response):
        return claims
    ctx = _ctx(request)
    user_agent, ip = _client(request)
    ctx.publish_event(open_event(claims, user_agent, ip, utcnow(), ctx.settings.keep_full_ip))
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


async def click(request: Request) -> Response:
    claims = _claims(request, LinkKind.CLICK, "click")
    if isinstance(claims, Response):
        return claims
    if not claims.url:
        return PlainTextResponse("token names no destination\n", status_code=404)
    ctx = _ctx(request)
    user_agent, ip = _client(request)
    ctx.publish_event(click_event(claims, claims.url, user_agent, ip, utcnow(), ctx.settings.keep_full_ip))
    # Only the URL sealed in the token at send time: no open redirect.
    return RedirectResponse(claims.url, status_code=302, headers=NO_STORE)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unsubscribe</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1.2rem}}</style></head>
<body><h1>Unsubscribe</h1>
<p>Stop receiving <strong>{list_id}</strong> emails?</p>
<form method="post">
<p><label><input type="radio" name="scope" value="list" checked> Only this list</label><br>
<label><input type="radio" name="scope" value="all"> Every email from this sender</label></p>
<input type="hidden" name="confirm" value="yes">
<button type="submit">Unsubscribe</button>
</form></body></html>
"""

_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><h1>You are unsubscribed</h1><p>{what}</p></body></html>
"""


async def unsubscribe_page(request: Request) -> Response:
    # Scanners prefetch GET links: this page changes nothing.
    claims = _claims(request, LinkKind.UNSUBSCRIBE, "unsubscribe")
    if isinstance(claims, Response):
        return claims
    return HTMLResponse(_PAGE.format(list_id=html.escape(claims.list_id)), headers=NO_STORE)


async def unsubscribe(request: Request) -> Response:
    claims = _claims(request, LinkKind.UNSUBSCRIBE, "unsubscribe")
    if isinstance(claims, Response):
        return claims
    if not claims.recipient:
        return PlainTextResponse("token names no recipient\n", status_code=400)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        return PlainTextResponse(
            "unsupported content type (use application/x-www-form-urlencoded or multipart/form-data)\n",
            status_code=415,
        )
    form = await request.form() if content_type else {}
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if not one_click and form.get("confirm") != "yes":
        return PlainTextResponse("expected List-Unsubscribe=One-Click or the page's confirm form\n", 400)
    scope = UnsubscribeScope.ALL if form.get("scope") == "all" else UnsubscribeScope.LIST
    ctx = _ctx(request)
    event = Unsubscribe(
        event_id=new_event_id(),
        occurred_at=utcnow(),
        campaign_id=claims.campaign_id,
        message_id=claims.message_id,
        recipient=claims.recipient,
        list_id=claims.list_id,
        scope=scope,
        method="one_click" if one_click else "form",
    )
    try:
        await ctx.publish_event_confirmed(event)
    except PublishError as exc:
        ctx.metrics.publish_failures.inc()
        log.warning("unsubscribe not acknowledged: %s", exc)
        return PlainTextResponse("temporarily unavailable, please retry\n", 503, headers={"Retry-After": "5"})
    if one_click:
        return PlainTextResponse("unsubscribed\n", headers=NO_STORE)
    what = (
        "You will get no more emails from this sender."
        if scope is UnsubscribeScope.ALL
        else (f"You will get no more {html.escape(claims.list_id)} emails.")
    )
    return HTMLResponse(_DONE.format(what=what), headers=NO_STORE)


routes = [
    Route("/o/{token}.gif", OpenPixel(), methods=["GET"], name="open"),
    Route("/c/{token}", click, methods=["GET"], name="click"),
    Route("/u/{token}", unsubscribe_page, methods=["GET"], name="unsubscribe_page"),
    Route("/u/{token}", unsubscribe, methods=["POST"], name="unsubscribe"),
]
