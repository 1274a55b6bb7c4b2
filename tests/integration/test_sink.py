"""The sink on the real broker and chdb: columns, replay, crash safety, suppression history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mailpulse.stack import Stack
from schemas.events import (
    AgentClass,
    AnyEvent,
    Bounce,
    BounceClass,
    Click,
    Complaint,
    Deferred,
    Delivered,
    Failed,
    Open,
    SendSkipped,
    Sent,
    Unsubscribe,
    UnsubscribeScope,
    new_event_id,
)
from schemas.settings import Settings
from tests.integration.helpers import campaign_events, operator_headers, produce, report, sql, unique, wait_until


def test_every_event_kind_lands_with_its_columns(stack: Settings) -> None:
    campaign = unique("kinds")
    now = datetime.now(UTC).replace(microsecond=0)
    base = {
        "occurred_at": now,
        "campaign_id": campaign,
        "message_id": "m1",
        "recipient": "k@example.org",
        "list_id": "news",
    }
    events: list[AnyEvent] = [
        Open(event_id="e-open", user_agent="UA", client_ip="203.0.113.0", agent_class=AgentClass.GOOGLE_PROXY, **base),  # type: ignore[arg-type]
        Click(event_id="e-click", url="https://example.com/x", **base),  # type: ignore[arg-type]
        Unsubscribe(event_id="e-unsub", scope=UnsubscribeScope.ALL, method="form", **base),  # type: ignore[arg-type]
        Sent(event_id="e-sent", smtp_code=250, smtp_reply="2.0.0 OK", attempt=2, **base),  # type: ignore[arg-type]
        Delivered(event_id="e-delivered", source="webhook", **base),  # type: ignore[arg-type]
        Deferred(event_id="e-deferred", smtp_code=451, smtp_reply="4.3.0 later", attempt=1, retry_at=now, **base),  # type: ignore[arg-type]
        Failed(event_id="e-failed", reason="gave up", attempt=5, **base),  # type: ignore[arg-type]
        Bounce(event_id="e-bounce", bounce_class=BounceClass.HARD, status="5.1.1", diagnostic="smtp; 550", **base),  # type: ignore[arg-type]
        Complaint(event_id="e-complaint", feedback_type="abuse", source="arf", **base),  # type: ignore[arg-type]
        SendSkipped(event_id="e-skip", reason="complaint", **base),  # type: ignore[arg-type]
    ]
    produce(stack, events)
    rows = wait_until(
        lambda: (
            (r := sql(stack, f"SELECT * FROM events WHERE campaign_id = '{campaign}'")) and len(r) == len(events) and r
        ),
        what="every kind",
    )
    by_id = {r["event_id"]: r for r in rows}
    assert by_id["e-open"]["agent_class"] == "google_proxy" and by_id["e-open"]["client_ip"] == "203.0.113.0"
    assert by_id["e-click"]["url"] == "https://example.com/x"
    assert by_id["e-unsub"]["scope"] == "all" and by_id["e-unsub"]["method"] == "form"
    assert by_id["e-sent"]["smtp_code"] == 250 and by_id["e-sent"]["attempt"] == 2
    assert by_id["e-delivered"]["source"] == "webhook"
    assert by_id["e-deferred"]["smtp_reply"] == "4.3.0 later"
    assert by_id["e-failed"]["reason"] == "gave up"
    assert by_id["e-bounce"]["bounce_class"] == "hard" and by_id["e-bounce"]["status"] == "5.1.1"
    assert by_id["e-complaint"]["feedback_type"] == "abuse"
    assert by_id["e-skip"]["reason"] == "complaint"
    assert all(r["recipient"] == "k@example.org" and r["kafka_offset"] >= 0 for r in rows)
    assert by_id["e-open"]["occurred_at"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))


def test_replaying_a_topic_twice_leaves_reports_unchanged(stack: Settings) -> None:
    campaign = unique("replay")
    start = datetime.now(UTC) - timedelta(seconds=5)
    produce(stack, campaign_events(campaign, 200, datetime(2026, 11, 1, 8, tzinfo=UTC)))
    expected = wait_until(lambda: (r := report(stack, campaign)) and r["sent"] == 200 and r, what="200 sent")
    assert expected["opens_unique_human"] == 100 and expected["opens_machine"] == 40 and expected["clicks_total"] == 50

    def hourly() -> object:
        return httpx.get(
            f"http://127.0.0.1:{stack.sink_api_port}/reports/{campaign}",
            params={"by": "hour"},
            headers=operator_headers(stack),
            timeout=30,
        ).json()

    hours_before = hourly()
    raw_before = sql(stack, f"SELECT count() AS n FROM events WHERE campaign_id = '{campaign}'")[0]["n"]
    for _ in range(2):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailpulse",
                "replay",
                "--topic",
                f"{stack.topic_prefix}.events",
                "--from-time",
                start.isoformat(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "replay mailpulse.events:" in done.stderr  # progress lines, apart from the result
    raw_after = sql(stack, f"SELECT count() AS n FROM events WHERE campaign_id = '{campaign}'")[0]["n"]
    assert raw_after >= raw_before  # copies may still be unmerged ...
    assert report(stack, campaign) == expected  # ... but never counted
    assert hourly() == hours_before
    bad = subprocess.run(
        [sys.executable, "-m", "mailpulse", "replay", "--topic", "nope", "--from-offset", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "cannot replay" in bad.stderr


def test_sink_killed_mid_batch_loses_nothing_and_counts_nothing_twice(stack: Settings) -> None:
    campaign = unique("sigkill")
    events = campaign_events(campaign, 30_000, datetime(2026, 11, 2, 8, tzinfo=UTC))
    stack_ctl = Stack(stack)
    produce(stack, events)
    # Kill as soon as the first rows of this campaign are in: the sink is mid-stream.
    wait_until(
        lambda: sql(stack, f"SELECT count() AS n FROM events WHERE campaign_id = '{campaign}'")[0]["n"] > 0,
        interval=0.05,
        what="first rows",
    )
    pid = stack_ctl.pid("sink")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stack_ctl.pid("sink") is None, what="the sink to die")
    stack_ctl.up(timeout=120)
    assert stack_ctl.pid("sink") != pid
    totals = wait_until(
        lambda: (
            (r := sql(stack, f"SELECT uniqExact(event_id) AS ids FROM events WHERE campaign_id = '{campaign}'"))
            and r[0]["ids"] == len(events)
            and r
        ),
        timeout=120,
        what="every event after the restart",
    )
    assert totals[0]["ids"] == len(events)
    got = report(stack, campaign)
    assert got["sent"] == 30_000 and got["opens_unique_human"] == 15_000 and got["clicks_total"] == 7_500


def test_suppression_changes_land_in_their_history_table(stack: Settings) -> None:
    recipient = f"{unique('hist')}@example.org"
    now = datetime.now(UTC)
    base = {"campaign_id": unique("hist"), "message_id": "m", "recipient": recipient, "list_id": "news"}
    produce(stack, [Complaint(event_id=new_event_id(), occurred_at=now, **base)])  # type: ignore[arg-type]
    rows = wait_until(
        lambda: sql(stack, f"SELECT suppressed, reasons FROM suppression_changes WHERE recipient = '{recipient}'"),
        what="history row",
    )
    assert rows == [{"suppressed": True, "reasons": ["complaint"]}]


def test_report_page_shows_the_campaign(stack: Settings) -> None:
    campaign = unique("page")
    produce(stack, campaign_events(campaign, 40, datetime(2026, 11, 3, 9, tzinfo=UTC)))
    wait_until(lambda: report(stack, campaign)["sent"] == 40, what="40 sent")
    page = httpx.get(
        f"http://127.0.0.1:{stack.sink_api_port}/reports/{campaign}/page", headers=operator_headers(stack), timeout=30
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'<span id="campaign">{campaign}</span>' in page.text
    assert 'data-chart="opens per hour"' in page.text and 'data-step="Clicked">10<' in page.text
    assert httpx.get(f"http://127.0.0.1:{stack.sink_api_port}/reports/{campaign}/page").status_code == 401


def test_report_page_in_headless_chromium(stack: Settings) -> None:
    from tests.integration.browser import render_page

    campaign = unique("chromium")
    produce(stack, campaign_events(campaign, 60, datetime(2026, 11, 4, 7, tzinfo=UTC)))
    wait_until(lambda: report(stack, campaign)["sent"] == 60, what="60 sent")
    screenshot = stack.var_dir / "report-page.png"
    seen = render_page(
        f"http://127.0.0.1:{stack.sink_api_port}/reports/{campaign}/page",
        operator_headers(stack),
        screenshot,
        "JSON.stringify({campaign: document.getElementById('campaign').textContent,"
        " sent: document.querySelector('[data-kpi=sent] b').textContent,"
        " openRate: document.querySelector('[data-kpi=open_rate] b').textContent,"
        " charts: [...document.querySelectorAll('svg[data-chart]')].map(s => s.getAttribute('data-chart')),"
        " bars: document.querySelectorAll('svg[data-chart=\"opens per hour\"] rect').length,"
        " width: document.querySelector('svg[data-chart=funnel]').getBoundingClientRect().width})",
    )
    shown = json.loads(seen)
    assert shown["campaign"] == campaign and shown["sent"] == "60" and shown["openRate"] == "50.00%"
    assert shown["charts"] == ["opens per hour", "clicks per hour", "funnel"]
    assert shown["bars"] >= 10 and shown["width"] > 300  # rendered, laid out, not empty
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_rows_land_exactly_like_column_tuples(tmp_path: Path) -> None:
    """The sink inserts JSONEachRow lines; the same events as clickhouse-connect tuples give the same table."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.json_rows_check", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("IDENTICAL ")
    assert int(done.stdout.split()[1]) > 300  # every kind, aggregate-mode nulls, escapes, microseconds
