"""Operator routes for a campaign's lifecycle (API key or a signed-in session): pause, resume, cancel, status.

A pause, resume or cancel is an event on the campaigns topic, answered 202 once Kafka acknowledged it
(`acks=all`); every worker's gate applies it within moments (`GET /campaigns/{id}` shows when). What the
campaign's state does not allow is refused with 409 (a cancel is final), what it is already is answered 200.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producers.campaign_status import WorkerClient, WorkerUnavailable
from producers.context import EdgeContext
from producers.publisher import PublishError
from schemas.campaigns import CampaignAction, Verdict, campaign_record, control_event, judge

log = logging.getLogger(__name__)


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": reason, **extra}, status_code=status)


def worker_client(ctx: EdgeContext) -> WorkerClient:
    return WorkerClient(ctx.settings, ctx.settings.api_keys)


async def apply_action(
    ctx: EdgeContext, campaign: str, action: CampaignAction, reason: str
) -> tuple[int, dict[str, Any]]:
    """Publish ``action`` for ``campaign`` unless its state refuses it (409) or makes it moot (200); 202 with
    the event's id once Kafka acknowledged it, 503 when it did not."""
    try:
        state = await worker_client(ctx).state(campaign)
    except WorkerUnavailable as exc:
        log.warning("no worker to check campaign %s against: publishing the %s as asked (%s)", campaign, action, exc)
        state = None
    verdict, message = judge(action, state["state"] if state else "active")
    if verdict is Verdict.REFUSED:
        return 409, {"error": message, "state": state}
    if verdict is Verdict.ALREADY:
        return 200, {"campaign": campaign, "action": str(action), "note": message, "state": state}
    event = control_event(action, campaign, reason=reason)
    key, value = campaign_record(event)
    try:
        await ctx.require_publisher().publish_confirmed(
            ctx.topics.campaigns, key, value, ctx.settings.publish_timeout_seconds
        )
    except PublishError as exc:
        ctx.metrics.publish_failures.inc()
        return 503, {"error": str(exc)}
    ctx.metrics.published_counter(event.kind).inc()
    return 202, {"campaign": campaign, "action": str(action), "event_id": event.event_id}


async def change_campaign(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    try:
        action = CampaignAction(request.path_params["action"])
    except ValueError:
        return _error(404, "no such action: pause, resume or cancel")
    raw = await request.body()
    reason = ""
    if raw:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "body must be JSON (or empty)")
        if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
            return _error(400, 'body must be a JSON object like {"reason": "..."}')
        reason = body.get("reason", "")
    status, body = await apply_action(ctx, request.path_params["campaign"], action, reason)
    return JSONResponse(body, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)


async def campaign_status(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    try:
        return JSONResponse(await worker_client(ctx).status(request.path_params["campaign"]))
    except WorkerUnavailable as exc:
        return _error(503, str(exc))


async def campaign_list(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.edge
    try:
        return JSONResponse(await worker_client(ctx).statuses())
    except WorkerUnavailable as exc:
        return _error(503, str(exc))


routes = [
    Route("/campaigns", campaign_list, methods=["GET"], name="campaign_list"),
    Route("/campaigns/{campaign}", campaign_status, methods=["GET"], name="campaign_status"),
    Route("/campaigns/{campaign}/{action}", change_campaign, methods=["POST"], name="change_campaign"),
]
