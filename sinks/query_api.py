"""Operator query API served by the sink process, which owns the embedded store.

Routes (API key required, ``/healthz`` excepted): ``GET /reports/{campaign}``
(``?by=hour`` for hourly rows), ``POST /sql`` (analysts' reads, in the sandbox of
:mod:`sinks.analyst_sql`), ``GET /messages/{id}`` (whom a message was sent to: the edge's mailto:
unsubscribes), and replays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from schemas.auth import ApiKeyMiddleware
from schemas.settings import Settings
from sinks.analyst_sql import RefusedStatement
from sinks.replay import ReplayError, ReplayJobs, parse_time
from sinks.report_page import render_report_page
from sinks.reports import campaign_hourly, campaign_report, sent_message
from sinks.store import AnalystBusy, EventStore, error_line

MAX_SQL_BYTES = 64 * 1024


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def run_read_only(store: EventStore, sql: str) -> dict[str, Any]:
    """An analyst's statement in the sandbox (RefusedStatement, AnalystBusy or ClickHouseError otherwise)."""
    columns, rows = store.analyst_query(sql)
    limit = store.limits.max_rows
    return {
        "columns": columns,
        "rows": [[jsonable(v) for v in row] for row in rows[:limit]],
        # The session breaks off at max_result_rows (it may overshoot by a block): say so.
        "truncated": len(rows) >= limit,
    }


def sql_error(exc: ClickHouseError) -> str:
    """ClickHouse's own first line: it names the limit a statement ran into."""
    return error_line(exc, 500)


def _replay_request(body: Any) -> tuple[str, datetime | None, int | None, datetime | None]:
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str):
        raise ReplayError("body must be a JSON object with a topic")
    from_offset = body.get("from_offset")
    if from_offset is not None and (not isinstance(from_offset, int) or from_offset < 0):
        raise ReplayError("from_offset must be a non-negative integer")
    from_time = parse_time(body["from_time"]) if body.get("from_time") else None
    to_time = parse_time(body["to_time"]) if body.get("to_time") else None
    return body["topic"], from_time, from_offset, to_time


def create_query_app(
    store: EventStore, settings: Settings, health: Callable[[], str | None] = lambda: None
) -> Starlette:
    jobs = ReplayJobs(settings, store)

    async def healthz(request: Request) -> Response:
        problem = health()
        if problem is not None:
            return PlainTextResponse(f"unhealthy: {problem}\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def report(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        if request.query_params.get("by") == "hour":
            hours = await run_in_threadpool(campaign_hourly, store, campaign)
            return JSONResponse({"campaign_id": campaign, "hours": hours})
        return JSONResponse(await run_in_threadpool(campaign_report, store, campaign))

    async def sql(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_SQL_BYTES:
            return JSONResponse({"error": "statement too long"}, status_code=413)
        try:
            # In a thread: a statement may run for the whole time limit, and health, reports
            # and other requests must not wait for it.
            result = await run_in_threadpool(run_read_only, store, body.decode("utf-8"))
        except UnicodeDecodeError:
            return JSONResponse({"error": "statement must be UTF-8"}, status_code=400)
        except RefusedStatement as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except AnalystBusy as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        except ClickHouseError as exc:
            return JSONResponse({"error": sql_error(exc)}, status_code=400)
        return JSONResponse(result)

    async def message(request: Request) -> Response:
        message_id = request.path_params["message"]
        if len(message_id) != 32 or any(c not in "0123456789abcdef" for c in message_id):
            return JSONResponse({"error": "a message id is 32 hex digits"}, status_code=400)
        found = await run_in_threadpool(sent_message, store, message_id)
        if found is None:
            return JSONResponse({"error": "no sent message with this id (yet)"}, status_code=404)
        return JSONResponse(found)

    async def page(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        body = render_report_page(campaign, campaign_report(store, campaign), campaign_hourly(store, campaign))
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    async def start_replay(request: Request) -> Response:
        try:
            topic, from_time, from_offset, to_time = _replay_request(json.loads(await request.body()))
            state = jobs.start(topic, from_time, from_offset, to_time)
        except json.JSONDecodeError:
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        except ReplayError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(state.as_dict(), status_code=202)

    async def replay_status(request: Request) -> Response:
        state = jobs.jobs.get(request.path_params["job"])
        if state is None:
            return JSONResponse({"error": "no such replay"}, status_code=404)
        return JSONResponse(state.as_dict())

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/reports/{campaign}", report),
            Route("/reports/{campaign}/page", page),
            Route("/messages/{message}", message),
            Route("/sql", sql, methods=["POST"]),
            Route("/replay", start_replay, methods=["POST"]),
            Route("/replay/{job}", replay_status),
        ],
        middleware=[Middleware(ApiKeyMiddleware, keys=settings.api_keys, open_paths=frozenset({"/healthz"}))],
    )
