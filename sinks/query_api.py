"""Operator query API served by the sink process, which owns the embedded store.

Routes (API key required, ``/healthz`` excepted): ``GET /reports/{campaign}``
(``?by=hour`` for hourly rows) and ``POST /sql`` (read-only statements only).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from schemas.auth import ApiKeyMiddleware
from schemas.settings import Settings
from sinks.replay import ReplayError, ReplayJobs, parse_time
from sinks.report_page import render_report_page
from sinks.reports import campaign_hourly, campaign_report
from sinks.store import EventStore

_READ_ONLY_START = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
MAX_SQL_BYTES = 64 * 1024


class ReadOnlyError(ValueError):
    pass


def check_read_only(sql: str) -> str:
    """The statement if it reads only; ReadOnlyError otherwise (ClickHouse's readonly=2 enforces it too)."""
    stripped = sql.strip().rstrip(";").strip()
    if not stripped:
        raise ReadOnlyError("empty statement")
    if ";" in stripped:
        raise ReadOnlyError("one statement at a time")
    if not _READ_ONLY_START.match(stripped):
        raise ReadOnlyError("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS are allowed")
    return stripped


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


def run_read_only(store: EventStore, sql: str, limit: int = 10_000) -> dict[str, Any]:
    statement = check_read_only(sql)
    columns, rows = store.query(
        statement, settings={"readonly": 2, "max_result_rows": limit, "result_overflow_mode": "break"}
    )
    return {"columns": columns, "rows": [[jsonable(v) for v in row] for row in rows[:limit]]}


def _replay_request(body: Any) -> tuple[str, datetime | None, int | None, datetime | None]:
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str):
        raise ReplayError("body must be a JSON object with a topic")
    from_offset = body.get("from_offset")
    if from_offset is not None and (not isinstance(from_offset, int) or from_offset < 0):
        raise ReplayError("from_offset must be a non-negative integer")
    from_time = parse_time(body["from_time"]) if body.get("from_time") else None
    to_time = parse_time(body["to_time"]) if body.get("to_time") else None
    return body["topic"], from_time, from_offset, to_time


def create_query_app(store: EventStore, settings: Settings) -> Starlette:
    jobs = ReplayJobs(settings, store)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def report(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        if request.query_params.get("by") == "hour":
            return JSONResponse({"campaign_id": campaign, "hours": campaign_hourly(store, campaign)})
        return JSONResponse(campaign_report(store, campaign))

    async def sql(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_SQL_BYTES:
            return JSONResponse({"error": "statement too long"}, status_code=413)
        try:
            result = run_read_only(store, body.decode("utf-8"))
        except UnicodeDecodeError:
            return JSONResponse({"error": "statement must be UTF-8"}, status_code=400)
        except ReadOnlyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except ClickHouseError as exc:
            return JSONResponse({"error": str(exc).splitlines()[0][:500]}, status_code=400)
        return JSONResponse(result)

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
            Route("/sql", sql, methods=["POST"]),
            Route("/replay", start_replay, methods=["POST"]),
            Route("/replay/{job}", replay_status),
        ],
        middleware=[Middleware(ApiKeyMiddleware, keys=settings.api_keys, open_paths=frozenset({"/healthz"}))],
    )
