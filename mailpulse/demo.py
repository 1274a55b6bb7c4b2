"""`mailpulse demo`: one campaign end to end through the running stack.

Posts a campaign to the operator edge, waits for the sender, reads the
delivered mail from the SMTP sink's Maildir, follows real pixel, click and
one-click unsubscribe links over HTTP, then prints the ClickHouse report and
checks it against what was simulated.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from mailpulse.errors import CliError
from mailpulse.operator_key import operator_headers
from mailpulse.queries import fetch_report, fetch_stats, print_report, suppression_check
from schemas.report import REPORT_KEYS
from schemas.settings import Settings

Say = Callable[[str], None]
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)
APPLE_MPP_UA = "Mozilla/5.0"
_PIXEL = re.compile(r'<img src="([^"]+/o/[^"]+\.gif)"')
_CLICK = re.compile(r'href="([^"]+/c/[^"]+)"')


@dataclass
class Expected:
    sent: int = 0
    delivered: int = 0
    bounced_hard: int = 0
    opens_total: int = 0
    opens_unique_human: int = 0
    opens_machine: int = 0
    clicks_total: int = 0
    clicks_unique: int = 0
    unsubscribes: int = 0
    unsubscribed: list[str] = field(default_factory=list)
    hard_bounced: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def demo_audience(campaign: str, size: int) -> list[dict[str, str]]:
    tag = campaign.replace(":", "-")
    rows = [{"email": f"hardbounce{i}+{tag}@example.com", "first_name": f"Bouncer{i}"} for i in range(2)]
    rows.append({"email": f"retryonce+{tag}@example.com", "first_name": "Retry"})
    rows += [{"email": f"user{i:03d}+{tag}@example.com", "first_name": f"User{i}"} for i in range(max(size - 3, 1))]
    return rows


HTML = """<html><body><h1>Hello $first_name!</h1>
<p>Our <a href="https://example.com/autumn-sale">autumn sale</a> starts today.
Read <a href="https://example.com/blog/launch">the launch post</a>.</p>
<p><a href="$unsubscribe_url">Unsubscribe</a></p></body></html>"""
TEXT = "Hello $first_name!\n\nOur autumn sale starts today: https://example.com/autumn-sale\n"


def _messages_for(settings: Settings, campaign: str) -> list[EmailMessage]:
    box = mailbox.Maildir(str(settings.var_dir / "maildir"), create=True)
    found: list[EmailMessage] = []
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        msg = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
        if msg.get("X-Mailpulse-Campaign") == campaign:
            found.append(msg)
    return found


def _wait_for(what: str, check: Callable[[], tuple[bool, str]], say: Say, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_note = ""
    while True:
        ok, note = check()
        if note != last_note:
            say(f"  {what}: {note}")
            last_note = note
        if ok:
            return
        if time.monotonic() > deadline:
            raise CliError(f"timed out after {timeout:.0f}s waiting for {what} ({note})")
        time.sleep(0.5)


def _html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


def run_demo(settings: Settings, say: Say, recipients: int = 20) -> int:
    headers = operator_headers(settings)
    campaign = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    audience = demo_audience(campaign, recipients)
    expected = Expected()
    expected.hard_bounced = [r["email"] for r in audience if r["email"].startswith("hardbounce")]
    expected.bounced_hard = len(expected.hard_bounced)
    expected.sent = len(audience) - expected.bounced_hard

    say(f"1/4 posting campaign {campaign} ({len(audience)} recipients) to the operator edge")
    response = httpx.post(
        f"http://127.0.0.1:{settings.operator_port}/campaigns",
        json={
            "campaign_id": campaign,
            "list_id": "newsletter",
            "subject": "Autumn news for $first_name",
            "html": HTML,
            "text": TEXT,
            "tracking": "full",
            "recipients": audience,
        },
        headers=headers,
        timeout=60,
    )
    if response.status_code != 202:
        raise CliError(f"campaign intake answered {response.status_code}: {response.text[:200]}")
    say(f"  queued {response.json()['queued']} send requests")

    say("2/4 waiting for the sender (retryonce is deferred once and retried)")

    def sent_all() -> tuple[bool, str]:
        report = fetch_report(settings, campaign)
        done = report["sent"] + report["bounced_hard"]
        return (
            done >= len(audience),
            f"{report['sent']} sent, {report['bounced_hard']} hard-bounced, "
            f"{report['deferred']} deferred of {len(audience)}",
        )

    _wait_for("sending", sent_all, say, timeout=180)
    messages = _messages_for(settings, campaign)
    say(f"  {len(messages)} messages in the SMTP sink's Maildir")

    say("3/4 simulating opens, clicks and unsubscribes over HTTP")
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        for index, msg in enumerate(sorted(messages, key=lambda m: str(m["To"]))):
            body = _html_part(msg)
            pixel = _PIXEL.search(body)
            links = _CLICK.findall(body)
            if pixel and index % 2 == 0:  # half the audience opens in a browser, twice
                for _ in range(2):
                    client.get(pixel.group(1), headers={"User-Agent": BROWSER_UA}).raise_for_status()
                expected.opens_total += 2
                expected.opens_unique_human += 1
            if pixel and index % 3 == 0:  # Apple Mail Privacy Protection prefetches a third
                client.get(pixel.group(1), headers={"User-Agent": APPLE_MPP_UA}).raise_for_status()
                expected.opens_total += 1
                expected.opens_machine += 1
            if links and index % 4 == 0:  # a quarter click
                answer = client.get(links[0], headers={"User-Agent": BROWSER_UA})
                if answer.status_code != 302:
                    raise CliError(f"click link answered {answer.status_code}")
                expected.clicks_total += 1
                expected.clicks_unique += 1
            if index in (1, 5):  # two use the one-click unsubscribe (RFC 8058)
                unsubscribe = str(msg["List-Unsubscribe"]).split(",")[0].strip(" <>")
                answer = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
                answer.raise_for_status()
                expected.unsubscribes += 1
                expected.unsubscribed.append(str(msg["To"]))
    expected.delivered = expected.sent
    say(
        f"  {expected.opens_total} opens ({expected.opens_machine} by a privacy proxy), "
        f"{expected.clicks_total} clicks, {expected.unsubscribes} unsubscribes"
    )

    say("4/4 waiting for ClickHouse to hold every event")
    want = expected.as_dict()

    def caught_up() -> tuple[bool, str]:
        report: dict[str, Any] = fetch_report(settings, campaign)
        off = {k: (report[k], v) for k, v in want.items() if report[k] != v}
        return not off, "all counts match" if not off else f"{len(off)} counts still differ"

    _wait_for("report", caught_up, say, timeout=60)
    print_report(settings, campaign, "table")
    for address in expected.unsubscribed + expected.hard_bounced:

        def suppressed(address: str = address) -> tuple[bool, str]:
            result = suppression_check(settings, address)
            return result["suppressed"], ", ".join(result["reasons"]) or "not yet"

        _wait_for(f"suppression of {address}", suppressed, say, timeout=30)

    def live_agrees() -> tuple[bool, str]:
        stats = fetch_stats(settings, campaign)
        report = fetch_report(settings, campaign)
        off = [key for key in REPORT_KEYS if stats[key] != report[key]]
        return not off, "live stats equal the report" if not off else f"{', '.join(off)} still differ"

    _wait_for("live stats", live_agrees, say, timeout=30)
    say(
        f"demo ok: report and live stats match the simulation; {len(expected.unsubscribed)} unsubscribed and "
        f"{len(expected.hard_bounced)} hard-bounced addresses are suppressed"
    )
    return 0
