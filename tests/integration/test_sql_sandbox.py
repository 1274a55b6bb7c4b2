"""Analysts' SQL against the running sink: nothing of the host, bounded time, ingestion never waits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from schemas.settings import Settings
from tests.integration.helpers import campaign_events, operator_headers, produce, report, unique, wait_until

HOSTILE = [
    "SELECT line FROM file('/proc/self/environ', 'LineAsString')",
    "SELECT file('/proc/self/environ')",
    "SELECT toUInt64(file('/proc/self/environ'))",
    "SELECT * FROM url('http://127.0.0.1:18081/metrics', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT name, value FROM system.settings",
    "SELECT * FROM events WHERE recipient IN (SELECT name FROM system.users)",
    "SELECT count() FROM events SETTINGS readonly = 0",
    "SELECT count() FROM events SETTINGS max_execution_time = 0",
    "SET readonly = 0",
]


def _secrets() -> list[str]:
    return [value for value in os.environ.get("MAILPULSE_API_KEYS", "").split(",") if value]


def test_hostile_sql_is_refused_over_http_and_the_cli(stack: Settings) -> None:
    url = f"http://127.0.0.1:{stack.sink_api_port}/sql"
    secrets = _secrets()
    assert secrets
    for statement in HOSTILE:
        answer = httpx.post(url, content=statement.encode(), headers=operator_headers(stack), timeout=60)
        assert answer.status_code in (400, 403), (statement, answer.status_code, answer.text[:200])
        assert answer.json()["error"], statement
        assert not any(secret in answer.text for secret in secrets), statement

        cli = subprocess.run(
            [sys.executable, "-m", "mailpulse", "sql", statement], capture_output=True, text=True, timeout=120
        )
        assert cli.returncode != 0, (statement, cli.stdout[:200])
        assert cli.stderr.strip() and "Traceback" not in cli.stderr, (statement, cli.stderr[-300:])
        assert not any(secret in cli.stdout + cli.stderr for secret in secrets), statement


def test_reads_of_the_project_tables_still_work_and_say_when_they_were_cut(stack: Settings) -> None:
    url = f"http://127.0.0.1:{stack.sink_api_port}/sql"
    answer = httpx.post(url, content=b"SELECT number FROM numbers(50000)", headers=operator_headers(stack), timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["truncated"] is True and stack.sql_max_rows <= len(body["rows"]) <= stack.sql_max_rows
    answer = httpx.post(url, content=b"SHOW TABLES", headers=operator_headers(stack), timeout=60)
    assert answer.status_code == 200 and ["events"] in answer.json()["rows"], answer.text


def test_a_cartesian_join_is_cut_off_while_ingestion_and_health_keep_up(stack: Settings) -> None:
    url = f"http://127.0.0.1:{stack.sink_api_port}/sql"
    outcome: dict[str, Any] = {}

    def long_query() -> None:
        started = time.monotonic()
        outcome["answer"] = httpx.post(
            url,
            content=b"SELECT count() FROM numbers(1000000000) AS a, numbers(1000) AS b",
            headers=operator_headers(stack),
            timeout=stack.sql_max_seconds + 60,
        )
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=long_query)
    thread.start()
    time.sleep(1.0)
    lags: list[float] = []
    health: list[float] = []
    while thread.is_alive():
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{stack.sink_api_port}/healthz", timeout=5).status_code == 200
        health.append(time.monotonic() - started)
        campaign = unique("lag")
        produce(stack, campaign_events(campaign, 20, datetime.now(UTC)))
        published = time.monotonic()

        def stored(campaign: str = campaign) -> bool:
            return bool(report(stack, campaign)["sent"] == 20)

        wait_until(stored, timeout=20, what="events stored mid-query")
        lags.append(time.monotonic() - published)
        time.sleep(1.0)
    thread.join()
    answer = outcome["answer"]
    assert answer.status_code == 400 and "Timeout exceeded" in answer.json()["error"], answer.text
    assert stack.sql_max_seconds - 1 <= outcome["seconds"] <= stack.sql_max_seconds + 10
    # Every wave of events was stored within seconds while the query ran, and health answered at once.
    assert len(lags) >= 5, lags
    assert max(lags) < 5.0, lags
    assert max(health) < 1.0, health
