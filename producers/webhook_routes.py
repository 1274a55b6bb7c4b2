"""Public webhook routes: verify the provider's signature, normalize, and answer 2xx only once Kafka
acknowledged every event. A bad or missing signature publishes nothing."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers.context import EdgeContext
from producers.publisher import PublishError
from producers.webhooks import mailgun, postmark, sendgrid, ses
from producers.webhooks.common import SignatureError, VerificationUnavailable, WebhookError
from schemas.events import AnyEvent
from schemas.json_input import NotJson, parse_json

log = logging.getLogger(__name__)


def fetch_sns_certificate(url: str) -> bytes:
    """Only ever called with a verified SNS URL (see ses.verify)."""
    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    return response.content


def confirm_sns_subscription(url: str) -> None:
    httpx.get(url, timeout=5.0, follow_redirects=False).raise_for_status()


async def _publish_all(ctx: EdgeContext, events: list[AnyEvent]) -> Response:
    try:
        await asyncio.gather(*(ctx.publish_event_confirmed(event) for event in events))
    except PublishError as exc:
        ctx.metrics.publish_failures.inc()
        log.warning("webhook events not acknowledged: %s", exc)
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503, headers={"Retry-After": "10"})
    return JSONResponse({"accepted": len(events)})


def _guarded(provider: str) -> Callable[[Callable[[Request, EdgeContext], Awaitable[Response]]], Any]:
    def wrap(handler: Callable[[Request, EdgeContext], Awaitable[Response]]) -> Any:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            ctx: EdgeContext = request.app.state.edge
            try:
                return await handler(request, ctx)
            except SignatureError as exc:
                ctx.metrics.rejected_tokens.labels(f"webhook_{provider}").inc()
                return JSONResponse({"error": str(exc)}, status_code=401)
            except WebhookError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except VerificationUnavailable as exc:
                log.warning("%s webhook could not be verified now: %s", provider, exc)
                return JSONResponse(
                    {"error": "temporarily unavailable"}, status_code=503, headers={"Retry-After": "30"}
                )

        return endpoint

    return wrap


@_guarded("ses")
async def ses_webhook(request: Request, ctx: EdgeContext) -> Response:
    # Off until the operator names the topics: any AWS account can sign SNS notifications from a topic of
    # its own, and those would suppress whomever they name.
    if not ctx.settings.sns_topic_arns:
        return JSONResponse({"error": "SES webhook not configured (MAILPULSE_SNS_TOPIC_ARNS)"}, status_code=403)
    body = await request.body()
    message = ses.parse_envelope(body)
    if message.get("TopicArn") not in ctx.settings.sns_topic_arns:
        return JSONResponse({"error": "topic not allowed"}, status_code=403)  # before any certificate is fetched
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ses.verify, message, ctx.sns_certificates)
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not ses.is_sns_url(url):
            raise SignatureError("subscribe URL is not an SNS https URL")
        await loop.run_in_executor(None, ctx.sns_confirm, url)
        return JSONResponse({"confirmed": True})
    if kind != "Notification":
        return JSONResponse({"accepted": 0})
    try:
        notification = parse_json(str(message.get("Message", "")))
    except NotJson as exc:
        raise WebhookError(f"SNS Message is {exc}") from None
    if not isinstance(notification, dict):
        raise WebhookError("SNS Message is not a JSON object")
    return await _publish_all(ctx, ses.normalize(notification))


@_guarded("sendgrid")
async def sendgrid_webhook(request: Request, ctx: EdgeContext) -> Response:
    if not ctx.settings.sendgrid_public_key:
        return JSONResponse({"error": "SendGrid webhook not configured"}, status_code=403)
    body = await request.body()
    sendgrid.verify(
        ctx.sendgrid_key,
        body,
        request.headers.get(sendgrid.SIGNATURE_HEADER, ""),
        request.headers.get(sendgrid.TIMESTAMP_HEADER, ""),
        ctx.settings.webhook_max_age_seconds,
    )
    events = [e for e in (sendgrid.normalize(raw) for raw in sendgrid.parse(body)) if e is not None]
    return await _publish_all(ctx, events)


@_guarded("mailgun")
async def mailgun_webhook(request: Request, ctx: EdgeContext) -> Response:
    if not ctx.settings.mailgun_signing_key:
        return JSONResponse({"error": "Mailgun webhook not configured"}, status_code=403)
    signature, data = mailgun.parse(await request.body())
    mailgun.verify(
        ctx.settings.mailgun_signing_key, signature, ctx.mailgun_replays, ctx.settings.webhook_max_age_seconds
    )
    event = mailgun.normalize(data)
    answer = await _publish_all(ctx, [event] if event else [])
    if answer.status_code == 200:
        # Remembered only once published: the redelivery of a delivery that got 503 is no replay.
        ctx.mailgun_replays.remember(str(signature.get("token", "")), time.time())
    return answer


@_guarded("postmark")
async def postmark_webhook(request: Request, ctx: EdgeContext) -> Response:
    if not ctx.settings.postmark_webhook_auth:
        return JSONResponse({"error": "Postmark webhook not configured"}, status_code=403)
    postmark.verify(request.headers.get("authorization", ""), ctx.settings.postmark_webhook_auth)
    event = postmark.normalize(postmark.parse(await request.body()))
    return await _publish_all(ctx, [event] if event else [])


# Each provider's largest documented post, with room for JSON escaping; every other public route keeps
# MAILPULSE_MAX_BODY_BYTES. SendGrid posts a batch once it reaches 768 KB (or every 30 s) and retries a
# 413 until it drops the batch; an SNS message is at most 256 KiB, escaped once more inside the
# notification; a Mailgun post is one event with the message's headers; a Postmark bounce can carry
# the bounced message itself ("Include message content", messages up to 10 MB).
BODY_LIMITS: dict[str, int] = {
    "/webhooks/sendgrid": 2 << 20,
    "/webhooks/ses": 1 << 20,
    "/webhooks/mailgun": 1 << 20,
    "/webhooks/postmark": 16 << 20,
}

routes = [
    Route("/webhooks/ses", ses_webhook, methods=["POST"], name="webhook_ses"),
    Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"], name="webhook_sendgrid"),
    Route("/webhooks/mailgun", mailgun_webhook, methods=["POST"], name="webhook_mailgun"),
    Route("/webhooks/postmark", postmark_webhook, methods=["POST"], name="webhook_postmark"),
]
