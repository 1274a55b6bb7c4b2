"""Operator routes (API key required): campaign intake onto the outbox topic."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers.campaigns import Campaign, CampaignError, build_requests
from producers.context import EdgeContext
from producers.publisher import PublishError
from schemas.campaigns import campaign_record, queued_event
from schemas.codec import encode
from schemas.events import TrackingMode
from schemas.json_input import NotJson, parse_json
from schemas.keys import recipient_key

log = logging.getLogger(__name__)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _campaign_from(body: dict[str, Any], ctx: EdgeContext) -> Campaign:
    try:
        tracking = TrackingMode(body.get("tracking", "full"))
    except ValueError:
        raise CampaignError("tracking must be full, aggregate or off") from None
    fields = {}
    for name in ("campaign_id", "subject"):
        value = body.get(name)
        if not isinstance(value, str):
            raise CampaignError(f"{name} (string) is required")
        fields[name] = value
    return Campaign(
        campaign_id=fields["campaign_id"],
        list_id=str(body.get("list_id") or "default"),
        from_address=str(body.get("from_address") or ctx.settings.from_address),
        subject=fields["subject"],
        html=str(body.get("html") or ""),
        text=str(body.get("text") or ""),
        tracking=tracking,
    )


async def create_campaign(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    try:
        body = parse_json(await request.body())
    except NotJson as exc:
        return _error(400, f"body must be JSON: it is {exc}")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    recipients = body.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, dict) for r in recipients):
        return _error(400, "recipients must be a list of objects with an 'email' field")
    try:
        campaign = _campaign_from(body, ctx)
    except CampaignError as exc:
        return _error(422, str(exc))
    intake = build_requests(campaign, ({str(k): str(v) for k, v in r.items()} for r in recipients))
    rejected = [{"row": row, "reason": reason} for row, reason in intake.rejected]
    if rejected and not intake.requests:
        # Not one recipient could be queued: a refusal, not an accepted campaign of nobody.
        return JSONResponse({"error": "no recipient could be queued", "rejected": rejected}, status_code=422)
    publisher = ctx.require_publisher()
    timeout = ctx.settings.publish_timeout_seconds * 6
    try:
        # Answer 202 only once the broker acknowledged every queued request.
        for start in range(0, len(intake.requests), 5000):
            chunk = intake.requests[start : start + 5000]
            await asyncio.gather(
                *(
                    publisher.publish_confirmed(
                        ctx.topics.outbox, recipient_key(r.recipient, r.campaign_id), encode(r), timeout
                    )
                    for r in chunk
                )
            )
        # What was queued, for the campaign's progress (the same intake repeated counts once).
        if intake.requests:
            queued = queued_event(campaign.campaign_id, (r.message_id for r in intake.requests))
            key, value = campaign_record(queued)
            await publisher.publish_confirmed(ctx.topics.campaigns, key, value, timeout)
    except PublishError as exc:
        ctx.metrics.publish_failures.inc()
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse(
        {
            "campaign_id": campaign.campaign_id,
            "queued": len(intake.requests),
            "duplicates": intake.duplicates,
            "rejected": rejected,
        },
        status_code=202,
    )


routes = [Route("/campaigns", create_campaign, methods=["POST"], name="create_campaign")]
