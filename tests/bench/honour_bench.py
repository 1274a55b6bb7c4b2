"""How soon the pipeline honours what a recipient or an operator asks, on a stack of its own (edge, worker,
sink, the local SMTP sink) beside the bench broker, while campaigns send at full speed:

- a one-click unsubscribe (RFC 8058 POST to the edge) to the worker's gate refusing the address;
- a mail to a message's mailto: unsubscribe address (the edge's SMTP receiver) to the same;
- a pause (acknowledged by the operator edge) to the last message of its campaign handed to the relay.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import statistics
import time
import uuid
from pathlib import Path

import httpx

from mailpulse.stack import Stack
from schemas.auth import auth_headers
from schemas.codec import encode
from schemas.events import SendRequest, message_id_for, utcnow
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, token_codec
from schemas.topics import Topics
from tests.bench.common import ROOT, Row, print_table, say
from tests.bench.sink_bench import produce_all
from tests.support.maildir_arrivals import arrivals, mail_headers

KEY = "bench-honour-key"
PORTS = {"EDGE": 28080, "OPERATOR": 28081, "SINK_API": 28082, "WORKER_WEB": 26066, "SMTP_SINK": 22525}


def stack_env(settings: Settings) -> dict[str, str]:
    env = {f"MAILPULSE_{name}_PORT": str(port) for name, port in PORTS.items()}
    return {
        **env,
        "MAILPULSE_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "MAILPULSE_TOPIC_PREFIX": f"bench-honour-{uuid.uuid4().hex[:8]}",
        "MAILPULSE_VAR_DIR": str(ROOT / "var" / "bench" / "honour"),
        "MAILPULSE_SMTP_URL": f"smtp://127.0.0.1:{PORTS['SMTP_SINK']}",
        "MAILPULSE_BOUNCE_SMTP_PORT": "22526",
        "MAILPULSE_API_KEYS": KEY,
        "MAILPULSE_CLICKHOUSE_URL": "",
        "MAILPULSE_LOG_FORMAT": "text",
    }


def requests(campaign: str, count: int) -> list[SendRequest]:
    return [
        SendRequest(
            message_id=message_id_for(campaign, f"r{i}-{campaign}@honour.example"),
            campaign_id=campaign,
            recipient=f"r{i}-{campaign}@honour.example",
            list_id="news",
            from_address="Bench <news@example.com>",
            subject="Honour",
            html="<p>Hello <a href='https://example.com/'>there</a></p>",
            text="Hello",
            enqueued_at=utcnow(),
        )
        for i in range(count)
    ]


class Honour:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = httpx.Client(base_url=f"http://127.0.0.1:{PORTS['WORKER_WEB']}", headers=auth_headers([KEY]))
        self.operator = httpx.Client(base_url=f"http://127.0.0.1:{PORTS['OPERATOR']}", headers=auth_headers([KEY]))
        self.maildir = settings.var_dir / "maildir"

    def send(self, campaign: str, count: int) -> list[SendRequest]:
        batch = requests(campaign, count)
        outbox = Topics.for_prefix(self.settings.topic_prefix).outbox
        produce_all(self.settings, outbox, [(r.recipient.encode(), encode(r)) for r in batch])
        return batch

    def sent(self, campaign: str) -> int:
        return int(self.worker.get(f"/stats/{campaign}").json()["sent"])

    def wait(self, check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.005)

    def suppressed(self, address: str) -> bool:
        return bool(self.worker.get(f"/suppression/{address}").json()["suppressed"])

    def one_click(self, recipient: str, campaign: str) -> float:
        claims = TokenClaims(LinkKind.UNSUBSCRIBE, message_id_for(campaign, recipient), campaign, "news", recipient)
        token = token_codec(self.settings).mint(claims)
        answer = httpx.post(f"http://127.0.0.1:{PORTS['EDGE']}/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text
        acknowledged = time.monotonic()
        self.wait(lambda: self.suppressed(recipient), 10, "the one-click unsubscribe applied")
        return (time.monotonic() - acknowledged) * 1000

    def mailto(self, recipient: str) -> float:
        header = mail_headers(self.maildir, recipient)["List-Unsubscribe"]
        address = header.split("<mailto:", 1)[1].split("?", 1)[0]
        with smtplib.SMTP("127.0.0.1", 22526, timeout=10) as smtp:
            smtp.sendmail(recipient, [address], b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n")
        acknowledged = time.monotonic()
        self.wait(lambda: self.suppressed(recipient), 10, "the mailto unsubscribe applied")
        return (time.monotonic() - acknowledged) * 1000

    def pause(self, campaign: str, count: int) -> float:
        """Milliseconds from the pause's acknowledgement to the campaign's last hand-off (0: none after)."""
        since = time.time() - 1
        self.send(campaign, count)
        self.wait(lambda: self.sent(campaign) >= count // 5, 60, "the campaign sending")
        answer = self.operator.post(f"/campaigns/{campaign}/pause")
        assert answer.status_code == 202, answer.text
        acknowledged = time.time()
        time.sleep(2.0)
        last = max(at for _, at in arrivals(self.maildir, campaign, since))
        self.operator.post(f"/campaigns/{campaign}/cancel")
        return max(0.0, (last - acknowledged) * 1000)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(settings: Settings, quick: bool) -> list[Row]:
    env = stack_env(settings)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    local = Settings.from_env()
    stack = Stack(local, say=lambda line: say(f"  {line}"))
    stack.down()
    for sub in ("maildir", "clickhouse", "faust"):
        shutil.rmtree(Path(local.var_dir) / sub, ignore_errors=True)
    samples = 5 if quick else 20
    try:
        stack.up(timeout=180)
        honour = Honour(local)
        say(f"  one-click and mailto unsubscribes while a campaign sends ({samples} each)")
        honour.send("honour-background", 3000 if quick else 20_000)
        targets = honour.send("honour-targets", 2 * samples)
        honour.wait(lambda: honour.sent("honour-targets") == len(targets), 120, "the target mail sent")
        clicks = [honour.one_click(r.recipient, r.campaign_id) for r in targets[:samples]]
        # The mailto path looks the message up at the sink: its `sent` must be stored first.
        sink = httpx.Client(base_url=f"http://127.0.0.1:{PORTS['SINK_API']}", headers=auth_headers([KEY]))
        honour.wait(lambda: sink.get(f"/messages/{targets[-1].message_id}").status_code == 200, 60, "the sends stored")
        mails = [honour.mailto(r.recipient) for r in targets[samples:]]
        runs = 3 if quick else 10
        say(f"  pause to last hand-off, {runs} campaigns sending at full speed")
        pauses = []
        for run in range(runs):
            pauses.append(honour.pause(f"honour-pause-{run}", 2000 if quick else 5000))
            say(f"    pause {run + 1}/{runs}: last hand-off {pauses[-1]:.0f} ms after the acknowledgement")
    finally:
        stack.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    rows = []
    for name, values in (("one-click unsubscribe", clicks), ("mailto unsubscribe", mails), ("pause", pauses)):
        what = "-> last hand-off" if name == "pause" else "-> suppression"
        worst = percentile(values, 0.99)
        rows.append(Row(f"{name} {what} p50", statistics.median(values), "ms"))
        rows.append(Row(f"{name} {what} p99", worst, "ms", "< 1,000", worst < 1000))
    print_table("Honour times (edge, worker, sink and SMTP sink of their own)", rows)
    return rows
