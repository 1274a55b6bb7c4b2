"""Edge -> Kafka -> faust -> SMTP -> ClickHouse, on the real local stack."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.integration.helpers import (
    edge,
    maildir_messages,
    maildir_raw,
    post_campaign,
    report,
    sql,
    suppression,
    unique,
    wait_until,
)


def test_open_and_unsubscribe_travel_from_edge_to_clickhouse(stack: Settings) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign, message = unique("camp"), unique("msg")
    recipient = f"{unique('reader')}@example.org"
    claims = dict(message_id=message, campaign_id=campaign, list_id="news", recipient=recipient)

    pixel = httpx.get(
        f"{edge(stack)}/o/{codec.mint(TokenClaims(LinkKind.OPEN, **claims))}.gif",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"},
    )
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert pixel.content.startswith(b"GIF89a")
    unsubscribe = httpx.post(
        f"{edge(stack)}/u/{codec.mint(TokenClaims(LinkKind.UNSUBSCRIBE, **claims))}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert unsubscribe.status_code == 200

    rows = wait_until(
        lambda: (
            (
                r := sql(
                    stack,
                    f"SELECT kind, recipient, list_id, agent_class, scope, method, message_id "
                    f"FROM events WHERE campaign_id = '{campaign}' ORDER BY kind",
                )
            )
            and len(r) == 2
            and r
        ),
        what="open and unsubscribe rows",
    )
    assert [r["kind"] for r in rows] == ["open", "unsubscribe"]
    assert all(r["recipient"] == recipient and r["message_id"] == message for r in rows)
    assert rows[0]["agent_class"] == "human"
    assert rows[1]["scope"] == "list" and rows[1]["method"] == "one_click"
    # The list-scoped unsubscribe reaches the suppression table too.
    state = wait_until(lambda: (s := suppression(stack, recipient)) and s["suppressed"] and s, what="suppression")
    assert state["reasons"] == ["unsubscribed:news"]


def test_mail_carries_rfc8058_headers_and_working_links(stack: Settings) -> None:
    recipient = f"{unique('linker')}@example.org"
    campaign = unique("links")
    assert post_campaign(stack, campaign, [recipient]).status_code == 202
    messages = wait_until(lambda: maildir_messages(stack, recipient=recipient, campaign=campaign), what="mail")
    msg = messages[0]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Return-Path"].startswith("<bounces+")
    unsubscribe_url = str(msg["List-Unsubscribe"]).split(",")[0].strip(" <>")
    assert recipient not in unsubscribe_url and recipient not in msg.as_string().split("\n\n", 1)[1]
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    click_url = re.search(r'href="([^"]+/c/[^"]+)"', html)
    pixel_url = re.search(r'<img src="([^"]+\.gif)"', html)
    assert click_url and pixel_url
    click = httpx.get(click_url.group(1), headers={"User-Agent": "Mozilla/5.0 (Macintosh) Safari/605"})
    assert click.status_code == 302 and click.headers["location"] == "https://example.com/offer"
    assert httpx.get(pixel_url.group(1)).status_code == 200
    assert httpx.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    totals = wait_until(
        lambda: (
            (r := report(stack, campaign))
            and r["unsubscribes"] == 1
            and r["clicks_total"] == 1
            and r["opens_total"] == 1
            and r
        ),
        what="engagement in the report",
    )
    assert totals["clicks_unique"] == 1 and totals["sent"] == 1


def test_send_cli_enqueues_each_recipient_once_even_when_run_twice(stack: Settings, tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    campaign = unique("cli")
    people = [f"{unique('cli')}@example.org" for _ in range(3)]
    (folder / "audience.csv").write_text(
        "email,first_name\n" + "".join(f"{p},P\n" for p in people) + "not-an-email,X\n"
    )
    (folder / "body.html").write_text("<html><body>Hi $first_name</body></html>")
    (folder / "body.txt").write_text("Hi $first_name")
    command = [
        sys.executable,
        "-m",
        "mailpulse",
        "send",
        "--campaign",
        campaign,
        "--audience",
        str(folder / "audience.csv"),
        "--subject",
        "Hi $first_name",
        "--html",
        str(folder / "body.html"),
        "--text",
        str(folder / "body.txt"),
    ]
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "queued 3 send requests" in done.stdout and "1 refused" in done.stdout
    wait_until(lambda: report(stack, campaign)["sent"] == 3, what="three sends")
    # The second run's requests were recognised by the sent-log: nobody got two mails.
    for person in people:
        assert len(maildir_messages(stack, recipient=person, campaign=campaign)) == 1


def test_report_cli_prints_the_report_keys_as_json(stack: Settings) -> None:
    import json

    from schemas.report import BREAKDOWN_KEYS, REPORT_KEYS

    campaign = unique("cli-report")
    assert post_campaign(stack, campaign, [f"{unique('r')}@example.org"]).status_code == 202
    wait_until(lambda: report(stack, campaign)["sent"] == 1, what="sent")
    done = subprocess.run(
        [sys.executable, "-m", "mailpulse", "report", "--campaign", campaign, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert tuple(printed) == (*REPORT_KEYS, *BREAKDOWN_KEYS)
    assert printed["sent"] == 1 and printed["delivered"] == 1


def test_delivered_mail_is_dkim_signed_and_verifies(stack: Settings) -> None:
    import dkim

    from tests.support.webhook_signing import dkim_keys

    recipient = f"{unique('dkim')}@example.org"
    campaign = unique("dkim")
    assert post_campaign(stack, campaign, [recipient]).status_code == 202
    (raw,) = wait_until(lambda: maildir_raw(stack, recipient=recipient, campaign=campaign), what="mail")
    assert b"DKIM-Signature:" in raw

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"test2026._domainkey.example.com."
        return dkim_keys()[1]

    assert dkim.verify(raw, dnsfunc=dns)
