"""Reads for the CLI: reports and SQL from the store, suppression from the worker.

With the embedded store the sink process owns the chdb data path, so reads go
through its query API; when no sink runs, the CLI opens the store itself.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import quote

import httpx

from mailpulse.errors import CliError
from mailpulse.operator_key import operator_headers
from mailpulse.processes import port_open
from mailpulse.progress import Progress
from schemas.report import BREAKDOWN_KEYS, REPORT_KEYS
from schemas.settings import Settings


def _sink_api(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.sink_api_port}"


def _require_key(settings: Settings) -> dict[str, str]:
    return operator_headers(settings)


def _check(response: httpx.Response) -> Any:
    if response.status_code == 401:
        raise CliError("the API key was refused (check MAILPULSE_API_KEYS)")
    body = response.json()
    if response.status_code >= 400:
        raise CliError(str(body.get("error", body)), status=2 if response.status_code < 500 else 1)
    return body


def _via_sink_or_store(settings: Settings, http_call: Any, direct_call: Any) -> Any:
    if settings.uses_embedded_clickhouse and port_open(settings.sink_api_port):
        try:
            return _check(http_call(_require_key(settings)))
        except httpx.ConnectError:
            pass  # the sink just stopped: nobody owns the data path, open it here
    from sinks.store import open_store

    return direct_call(open_store(settings))


def fetch_report(settings: Settings, campaign: str, by_hour: bool = False) -> Any:
    def http_call(headers: dict[str, str]) -> httpx.Response:
        params = {"by": "hour"} if by_hour else {}
        return httpx.get(
            f"{_sink_api(settings)}/reports/{quote(campaign, safe='')}", params=params, headers=headers, timeout=60
        )

    def direct_call(store: Any) -> Any:
        from sinks.reports import campaign_hourly, campaign_report

        return (
            {"campaign_id": campaign, "hours": campaign_hourly(store, campaign)}
            if by_hour
            else (campaign_report(store, campaign))
        )

    return _via_sink_or_store(settings, http_call, direct_call)


def fetch_sql(settings: Settings, statement: str) -> dict[str, Any]:
    def http_call(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{_sink_api(settings)}/sql", content=statement.encode(), headers=headers, timeout=120)

    def direct_call(store: Any) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        from sinks.analyst_sql import RefusedStatement
        from sinks.query_api import run_read_only, sql_error

        try:
            return run_read_only(store, statement)
        except RefusedStatement as exc:
            raise CliError(str(exc), status=2) from None
        except ClickHouseError as exc:
            raise CliError(sql_error(exc), status=2) from None

    result: dict[str, Any] = _via_sink_or_store(settings, http_call, direct_call)
    return result


def render_rows(columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c)) for i, c in enumerate(columns)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render_report(campaign: str, report: Any, fmt: str, by_hour: bool) -> str:
    """One campaign report (or its hourly rows) as `mailpulse report` and `mailpulse stats` print it."""
    if by_hour:
        columns = list(report[0]) if report else ["hour"]
        return render_rows(columns, [[h[c] for c in columns] for h in report], fmt)
    if fmt == "json":
        return json.dumps({key: report[key] for key in (*REPORT_KEYS, *BREAKDOWN_KEYS) if key in report})
    if fmt == "csv":
        return render_rows(list(REPORT_KEYS), [[report[k] for k in REPORT_KEYS]], "csv")
    lines = [f"campaign {campaign}"]
    for key in REPORT_KEYS:
        value = report[key]
        shown = f"{value:.2%}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<20} {shown:>10}")
    if report.get("bounces_by_reason"):
        lines.append("  bounced or blocked messages by reason:")
        lines += [f"    {reason:<24} {count:>8}" for reason, count in report["bounces_by_reason"].items()]
    if report.get("bounces_by_provider"):
        lines.append("  by mailbox provider:   hard / soft / block")
        for provider, cells in report["bounces_by_provider"].items():
            counts = " / ".join(str(cells.get(c, 0)) for c in ("hard", "soft", "block"))
            lines.append(f"    {provider:<20} {counts}")
    return "\n".join(lines)


def print_report(settings: Settings, campaign: str, fmt: str, by_hour: bool = False) -> int:
    if fmt == "html":
        print(report_page(settings, campaign))
        return 0
    report = fetch_report(settings, campaign, by_hour)
    print(render_report(campaign, report["hours"] if by_hour else report, fmt, by_hour))
    return 0


def _worker_get(settings: Settings, path: str, params: dict[str, str] | None = None) -> Any:
    headers = _require_key(settings)
    url = f"http://127.0.0.1:{settings.worker_web_port}{path}"
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=10)
    except httpx.ConnectError:
        raise CliError(f"no worker answers on 127.0.0.1:{settings.worker_web_port}; start it (make up)") from None
    return _check(response)


def fetch_stats(settings: Settings, campaign: str, by_hour: bool = False) -> Any:
    """The live counts of the worker's engagement tables (the keys `mailpulse report` prints)."""
    params = {"by": "hour"} if by_hour else None
    return _worker_get(settings, f"/stats/{quote(campaign, safe='')}", params)


def print_stats(settings: Settings, campaign: str, fmt: str, by_hour: bool = False) -> int:
    print(render_report(campaign, fetch_stats(settings, campaign, by_hour), fmt, by_hour))
    return 0


def print_sql(settings: Settings, statement: str, fmt: str) -> int:
    result = fetch_sql(settings, statement)
    print(render_rows(result["columns"], result["rows"], fmt))
    return 0


def suppression_check(settings: Settings, address: str) -> dict[str, Any]:
    result: dict[str, Any] = _worker_get(settings, f"/suppression/{quote(address, safe='@')}")
    return result


def run_replay(
    settings: Settings, topic: str, from_time: str | None, from_offset: int | None, to_time: str | None, say: Any
) -> int:
    """Replay through the sink process when it owns the embedded store, else here; progress each second."""
    import time

    from sinks.replay import ReplayError, ReplayProgress, parse_time, replay

    progress = Progress(f"replay {topic}", None, "record")

    def show(state: dict[str, Any]) -> None:
        if state["total"] and state["total"] != progress.total:
            progress.set_total(state["total"])
        progress.update(state["read"] - progress.done, inserted=state["inserted"], undecodable=state["undecodable"])

    try:
        start = parse_time(from_time) if from_time else None
        end = parse_time(to_time) if to_time else None
    except ReplayError as exc:
        raise CliError(str(exc), status=2) from None
    if (start is None) == (from_offset is None):
        raise CliError("give exactly one of --from-time and --from-offset", status=2)
    if settings.uses_embedded_clickhouse and port_open(settings.sink_api_port):
        base = _sink_api(settings)
        try:
            body = {"topic": topic, "from_time": from_time, "from_offset": from_offset, "to_time": to_time}
            state = _check(httpx.post(f"{base}/replay", json=body, headers=_require_key(settings), timeout=30))
        except httpx.ConnectError:
            state = None
        if state is not None:
            while not state["finished"]:
                time.sleep(1.0)
                state = _check(httpx.get(f"{base}/replay/{state['id']}", headers=_require_key(settings), timeout=30))
                show(state)
            progress.close()
            if state["error"]:
                raise CliError(f"replay failed: {state['error']}")
            say(f"replayed {state['read']} records from {topic} into ClickHouse")
            return 0
    from sinks.store import EventStore

    try:
        result: ReplayProgress = replay(
            settings,
            EventStore(settings.clickhouse_url),
            topic,
            start,
            from_offset,
            end,
            on_progress=lambda p: show(p.as_dict()),
        )
    except ReplayError as exc:
        raise CliError(str(exc), status=2) from None
    finally:
        progress.close()
    say(f"replayed {result.read} records from {topic} into ClickHouse")
    return 0


def report_page(settings: Settings, campaign: str) -> str:
    response = httpx.get(
        f"{_sink_api(settings)}/reports/{quote(campaign, safe='')}/page", headers=_require_key(settings), timeout=60
    )
    if response.status_code != 200:
        _check(response)
    return response.text
