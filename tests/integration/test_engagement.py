"""Live engagement aggregates, complaint alerts and operator suppression, on the real stack."""

from __future__ import annotations

import json
from typing import Any

import httpx

from schemas.codec import decode_complaint_alert
from schemas.events import Complaint, Sent, utcnow
from schemas.keys import normalize_address
from schemas.report import BREAKDOWN_KEYS, REPORT_KEYS
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.helpers import (
    TopicReader,
    cli,
    operator_headers,
    publish_events,
    report,
    stats,
    suppression,
    unique,
    wait_until,
)
from tests.support.models import event_stream, report_model, suppression_model
from tests.support.worker_process import metric_value


def test_stats_and_report_agree_with_the_model_of_the_same_events(stack: Settings) -> None:
    campaigns = [unique("agg-a"), unique("agg-b")]
    domain = f"{unique('d')}.example"
    events = event_stream(11, campaigns, 150, domain=domain)
    publish_events(stack, events)
    for campaign in campaigns:
        expected = report_model(events, campaign)
        wait_until(lambda c=campaign, e=expected: stats(stack, c) == e, timeout=60, what=f"live stats of {campaign}")
        wait_until(lambda c=campaign, e=expected: report(stack, c) == e, timeout=60, what=f"report of {campaign}")

    # The CLI prints exactly the report keys, and both commands agree.
    live = cli(stack, "stats", "--campaign", campaigns[0], "--format", "json")
    stored = cli(stack, "report", "--campaign", campaigns[0], "--format", "json")
    assert live.returncode == 0 and stored.returncode == 0, live.stderr + stored.stderr
    assert list(json.loads(live.stdout)) == [*REPORT_KEYS, *BREAKDOWN_KEYS]
    assert json.loads(live.stdout) == json.loads(stored.stdout)

    hours = stats(stack, campaigns[0], by="hour")
    assert len(hours) > 1
    assert sum(h["sent"] for h in hours) == report_model(events, campaigns[0])["sent"]

    # Suppression of every recipient matches a plain fold of the same events in stream order.
    model = suppression_model(events, stack)
    for address, reasons in model.items():
        assert suppression(stack, address)["reasons"] == reasons, address

    # The same stream again (a replay, or a producer retrying everything): nothing changes.
    now = utcnow()
    marker = Sent(event_id=unique("e"), occurred_at=now, campaign_id=campaigns[1], message_id="m", recipient="m@x.org")
    read_before = worker_events_read(stack)
    publish_events(stack, [*events, marker])
    wait_until(lambda: worker_events_read(stack) >= read_before + len(events) + 1, timeout=60, what="the replay read")
    sent = report_model(events, campaigns[1])["sent"]
    wait_until(lambda: stats(stack, campaigns[1])["sent"] == sent + 1, timeout=30, what="the rollup caught up")
    assert stats(stack, campaigns[0]) == report_model(events, campaigns[0])
    for address, reasons in model.items():
        assert suppression(stack, address)["reasons"] == reasons, address


def worker_events_read(settings: Settings) -> float:
    text = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=10).text
    return metric_value(text, "mailpulse_worker_events_total")


def campaign_state(settings: Settings, campaign: str) -> dict[str, Any] | None:
    answer = httpx.get(
        f"http://127.0.0.1:{settings.worker_web_port}/campaigns/{campaign}", headers=operator_headers(settings)
    )
    return answer.json() if answer.status_code == 200 else None


def test_stats_refuse_requests_without_an_api_key(stack: Settings) -> None:
    answer = httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/stats/anything", timeout=10)
    assert answer.status_code == 401
    answer = httpx.get(
        f"http://127.0.0.1:{stack.worker_web_port}/stats/anything",
        params={"by": "week"},
        headers=operator_headers(stack),
        timeout=10,
    )
    assert answer.status_code == 400


def test_complaint_rate_above_the_lines_raises_one_alert_per_level_and_the_critical_one_pauses(
    stack: Settings,
) -> None:
    alerts = TopicReader(stack, Topics.for_prefix(stack.topic_prefix).alerts)
    campaign = unique("complaints")
    now = utcnow()
    sends = [
        Sent(event_id=unique("e"), occurred_at=now, campaign_id=campaign, message_id=f"m{i}", recipient=f"c{i}@ex.org")
        for i in range(1000)
    ]
    publish_events(stack, sends)
    wait_until(lambda: stats(stack, campaign)["sent"] == 1000, timeout=60, what="the sends counted")

    def complaint(i: int) -> Complaint:
        return Complaint(
            event_id=unique("e"), occurred_at=now, campaign_id=campaign, message_id=f"m{i}", recipient=f"c{i}@ex.org"
        )

    publish_events(stack, [complaint(i) for i in range(2)])  # 0.2%: above the 0.1% line
    got = alerts.read(60, until=lambda rs: any(r.key() == campaign.encode() for r in rs))
    first = [decode_complaint_alert(r.value()) for r in got if r.key() == campaign.encode()]
    assert [(a.level, a.complaints, a.delivered) for a in first] == [("warning", 2, 1000)]
    publish_events(stack, [complaint(i) for i in range(2, 5)])  # 0.5%: above 0.3%
    got = alerts.read(60, until=lambda rs: any(r.key() == campaign.encode() for r in rs))
    second = [decode_complaint_alert(r.value()) for r in got if r.key() == campaign.encode()]
    assert [(a.level, a.paused) for a in second] == [("critical", True)]
    # The campaign is paused by the worker itself, saying why.
    state = wait_until(lambda: (s := campaign_state(stack, campaign)) and s["state"] == "paused" and s, timeout=10)
    assert state["source"] == "automatic" and "complaint rate" in state["reason"], state
    # The alert fires at the fourth complaint; the fifth may still be on its way.
    wait_until(lambda: stats(stack, campaign)["complaint_rate"] == round(5 / 1000, 6), timeout=30, what="all five")
    metrics = httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/metrics", timeout=10).text
    assert 'mailpulse_worker_complaint_alerts_total{level="critical"}' in metrics
    alerts.close()


def test_operator_suppression_add_check_remove_and_export(stack: Settings) -> None:
    address = f"{unique('manual')}@Example.org"
    normalized = normalize_address(address)
    added = cli(stack, "suppression", "add", address, "--reason", "asked by phone")
    assert added.returncode == 0, added.stderr
    assert f"{normalized}: suppressed (manual)" in added.stdout
    assert suppression(stack, normalized)["reasons"] == ["manual"]

    exported = cli(stack, "suppression", "export", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert any(r["recipient"] == normalized and r["reasons"] == ["manual"] for r in rows)

    removed = cli(stack, "suppression", "remove", address)
    assert removed.returncode == 0, removed.stderr
    assert f"{normalized}: not suppressed" in removed.stdout
    check = cli(stack, "suppression", "check", address, "--format", "json")
    assert json.loads(check.stdout)["suppressed"] is False
    after = cli(stack, "suppression", "export")
    assert normalized not in after.stdout  # cleared addresses are left out unless asked for
    assert normalized in cli(stack, "suppression", "export", "--include-cleared").stdout

    bad = cli(stack, "suppression", "add", "not-an-address")
    assert bad.returncode == 2 and "not an email address" in bad.stderr
