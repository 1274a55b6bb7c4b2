"""Bounce reasons end to end, on the real stack: the bounce corpus through the SMTP receiver into
suppression, the SMTP reply corpus through the sender (the sink answers with each reply), and a
campaign refused by one domain's blocklist.
"""

from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any

import httpx

from producers.bounce_mail import parse_mail
from producers.bounce_records import RecordKind
from schemas.attribution import BounceAddresses
from schemas.bounce_reasons import BounceReason
from schemas.codec import decode_block_alert
from schemas.events import AnyEvent, Bounce, Deferred
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.conftest import BLOCK_REPLY, scripted_replies
from tests.integration.helpers import (
    TopicReader,
    cli,
    operator_headers,
    post_campaign,
    report,
    suppression,
    unique,
    wait_until,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = json.loads((FIXTURES / "bounces" / "expected.json").read_text())
SUPPRESSING = {"complaint", *(str(r) for r in BounceReason if r.bounce_class == "hard")}


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_the_bounce_corpus_suppresses_exactly_the_failed_addresses(stack: Settings) -> None:
    run = unique("c").replace("-", "")
    labelled: dict[str, str] = {}  # this run's address -> the reason it is labelled with
    addresses = BounceAddresses(stack.secret_keys)
    with smtplib.SMTP("127.0.0.1", stack.bounce_smtp_port, timeout=30) as smtp:
        for index, (name, expected) in enumerate(sorted(EXPECTED.items())):
            raw = (FIXTURES / "bounces" / name).read_bytes()
            address = "nobody@example.org"
            for record in expected["records"]:
                local, _, domain = record["recipient"].partition("@")
                address = f"{local}+{run}{index}@{domain}"
                raw = raw.replace(record["recipient"].encode(), address.encode())
                if record["reason"] != "delayed":
                    labelled[address] = record["reason"]
            # As the receiving MTAs return it: to the bounce address the sender made for that recipient.
            message = expected["message_id"] or "0" * 32
            smtp.sendmail("", [addresses.address(message, address, stack.bounce_domain)], crlf(raw))
    should = {a for a, reason in labelled.items() if reason in SUPPRESSING}
    should_not = set(labelled) - should

    def suppressed_now() -> set[str]:
        return {a for a in labelled if suppression(stack, a)["suppressed"]}

    # Every report is applied in order per partition; wait for the suppressing ones, then read them all.
    wait_until(lambda: len(suppressed_now() & should) >= 0.95 * len(should), timeout=90, what="corpus suppressions")
    wait_until(lambda: suppressed_now() & should == should, timeout=10, what="all of them")
    done = suppressed_now()
    caught, wrongly = len(done & should), sorted(done & should_not)
    print(
        f"\ncorpus end to end: {caught}/{len(should)} address failures and complaints suppressed"
        f" ({caught / len(should):.1%}); {len(wrongly)}/{len(should_not)} others suppressed"
        f" ({len(wrongly) / len(should_not):.1%})"
    )
    assert len(should) >= 70 and len(should_not) >= 140
    assert caught / len(should) >= 0.95
    assert len(wrongly) / len(should_not) <= 0.03, wrongly
    # The operator's command says the same as the worker's view.
    for address in [*sorted(should)[:2], *sorted(should_not)[:2]]:
        checked = cli(stack, "suppression", "check", address, "--format", "json")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["suppressed"] is (address in should)


def dsn_for(recipient: str, reply: str) -> bytes:
    """The reply as a Postfix report would carry it: delayed for a temporary answer, failed otherwise."""
    lines = reply.split("\\n")
    action = "delayed" if reply.startswith("4") else "failed"
    status = next((w for w in lines[0].split()[1:2] if w[:1] in "45" and w.count(".") == 2), "")
    return crlf(
        f"""From: MAILER-DAEMON@mail.example.com (Mail Delivery System)
To: bounces+0123456789abcdef0123456789abcdef@bounces.example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

<{recipient}>: host mx.example.org[198.51.100.7] said: {" ".join(lines)}

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.com

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status or ("4.0.0" if action == "delayed" else "5.0.0")}
Diagnostic-Code: smtp; {" ".join(lines)}

--b--
""".encode()
    )


def first_refusal(events: list[AnyEvent], recipient: str) -> Bounce | Deferred | None:
    """The relay's first answer to this recipient. A transaction pipelined on a connection the relay
    closed with a 421 for another message fails with no answer (``relay_unavailable``, retried): that
    is no answer of the relay's to this recipient."""
    for event in events:
        if (
            event.recipient == recipient
            and isinstance(event, Bounce | Deferred)
            and event.reason is not BounceReason.RELAY_UNAVAILABLE
        ):
            return event
    return None


def test_the_same_replies_give_the_same_reasons_through_the_sender_and_through_mail(
    stack: Settings, events: TopicReader
) -> None:
    # A 421 closes the connection (RFC 5321): the transactions pipelined behind it on that connection get
    # no answer and are retried, in step with it. Those replies are checked through the classifier alone.
    rows = [row for row in scripted_replies() if not row[3].startswith("421")]
    assert len(rows) >= 60
    # Half the corpus are refusals for the sender's sake, all at one domain: a real campaign like that is
    # paused by the worker after 50 attempts (MAILPULSE_AUTO_PAUSE). Campaigns of 40 are never judged.
    campaigns = [unique("replies") for _ in range(0, len(rows), 40)]
    for number, campaign in enumerate(campaigns):
        chunk = rows[number * 40 : (number + 1) * 40]
        response = post_campaign(stack, campaign, [rcpt for rcpt, _, _, _ in chunk])
        assert response.status_code == 202, response.text
    got: list[AnyEvent] = []

    def answered(found: list[AnyEvent]) -> bool:
        got[:] = [e for e in found if e.campaign_id in campaigns]
        return all(first_refusal(got, rcpt) is not None for rcpt, _, _, _ in rows)

    events.events(120, until=answered)
    differ, unlike_label = [], []
    for rcpt, stage, label, reply in rows:
        refusal = first_refusal(got, rcpt)
        assert refusal is not None, f"no refusal recorded for {rcpt} ({reply[:40]})"
        (record,) = parse_mail(dsn_for(rcpt, reply)).records
        assert record.kind is (RecordKind.DELAY if reply.startswith("4") else RecordKind.BOUNCE)
        if record.reason != refusal.reason:
            differ.append((reply[:70], stage, str(refusal.reason), record.reason))
        if refusal.reason != label:
            unlike_label.append((reply[:70], label, str(refusal.reason)))
        # A 5xx refusal is final at once, with the reason's class: only address failures suppress.
        if isinstance(refusal, Bounce):
            assert refusal.bounce_class == BounceReason(refusal.reason).bounce_class or refusal.bounce_class == "soft"
    print(f"\n{len(rows)} replies through the sender: {len(differ)} read differently by the mail path")
    for row in unlike_label:
        print("  sender path reads differently from the label:", row)
    assert differ == []
    assert len(unlike_label) <= 0.05 * len(rows)


def test_a_campaign_blocked_at_one_domain_suppresses_nobody_alerts_pauses_and_reports_blocks(stack: Settings) -> None:
    campaign = unique("blocked")
    blocked = [f"reader{i}@blocked.example" for i in range(60)]
    fine = [f"{unique('fine')}@example.org" for _ in range(10)]
    alerts = TopicReader(stack, Topics.for_prefix(stack.topic_prefix).alerts)
    try:
        assert post_campaign(stack, campaign, blocked + fine).status_code == 202
        final = wait_until(
            lambda: (r := report(stack, campaign))["blocked"] == 60 and r["sent"] == 10 and r,
            timeout=90,
            what="60 blocked and 10 sent in the report",
        )

        def ours(records: list[Any]) -> list[Any]:
            return [
                decode_block_alert(r.value())
                for r in records
                if b'"domain"' in r.value() and json.loads(r.value())["campaign_id"] == campaign
            ]

        raised = ours(alerts.read(30, until=lambda records: bool(ours(records))))
        raised += ours(alerts.read(3))  # nothing more comes
    finally:
        alerts.close()
    # One alert at the alert line, one at the pause line, which paused the campaign (MAILPULSE_AUTO_PAUSE).
    assert [(a.domain, a.paused) for a in raised] == [("blocked.example", False), ("blocked.example", True)]
    for alert in raised:
        assert alert.blocked >= 50 and "spamhaus" in alert.top_diagnostic.lower()
        assert BLOCK_REPLY.split(";")[0][4:] in alert.top_diagnostic
    state = httpx.get(
        f"http://127.0.0.1:{stack.worker_web_port}/campaigns/{campaign}", headers=operator_headers(stack)
    ).json()
    assert (state["state"], state["source"]) == ("paused", "automatic") and "blocked.example" in state["reason"]
    assert final["bounced_hard"] == 0 and final["bounced_soft"] == 0 and final["delivered"] == 10
    assert final["bounces_by_reason"] == {"blocked": 60}
    assert final["bounces_by_provider"] == {"other": {"block": 60}}
    assert not any(suppression(stack, address)["suppressed"] for address in blocked)
