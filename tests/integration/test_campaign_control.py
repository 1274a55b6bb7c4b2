"""Pause, resume and cancel a campaign while it sends, through the running stack and the local SMTP sink."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from schemas.settings import Settings
from tests.integration.helpers import cli, report, stats, unique, wait_until
from tests.support.maildir_arrivals import arrivals as maildir_arrivals

HTML = '<p>Hello $first_name, <a href="https://example.com/news">news</a></p>'


def arrivals(settings: Settings, campaign: str, since: float) -> list[tuple[str, float]]:
    return maildir_arrivals(settings.var_dir / "maildir", campaign, since)


def send(settings: Settings, campaign: str, people: int, folder: Path) -> list[str]:
    recipients = [f"p{i}-{campaign}@example.org" for i in range(people)]
    audience, html = folder / "audience.csv", folder / "news.html"
    audience.write_text("email,first_name\n" + "".join(f"{r},P{i}\n" for i, r in enumerate(recipients)))
    html.write_text(HTML)
    done = cli(
        settings, "send", "--campaign", campaign, "--audience", str(audience), "--subject", "Hi", "--html", str(html)
    )
    assert done.returncode == 0, done.stderr
    return recipients


def sent(settings: Settings, campaign: str) -> int:
    return int(stats(settings, campaign)["sent"])


def test_a_paused_campaign_stops_within_a_second_and_its_resume_mails_everyone_once(
    stack: Settings, tmp_path: Path
) -> None:
    campaign = unique("pause")
    started = time.time() - 1
    recipients = send(stack, campaign, 20_000, tmp_path)
    wait_until(lambda: sent(stack, campaign) >= 1000, timeout=120, interval=0.05, what="sending under way")
    paused = cli(stack, "campaign", "pause", campaign, "--reason", "a wrong link")
    paused_at = time.time()
    assert paused.returncode == 0 and "applied by the worker" in paused.stdout, paused.stderr
    time.sleep(3.0)
    during = arrivals(stack, campaign, started)
    last = max(at for _, at in during)
    # Nothing handed to the relay later than a second after the pause returned (the mail in the delivery
    # process's window when it was applied goes out in the first milliseconds).
    assert last - paused_at < 1.0, (last - paused_at, len(during))
    assert 1000 <= len(during) < len(recipients)
    status = cli(stack, "campaign", "status", campaign, "--format", "json")
    assert '"state": "paused"' in status.stdout and '"queued": 20000' in status.stdout, status.stdout
    resumed = cli(stack, "campaign", "resume", campaign)
    assert resumed.returncode == 0, resumed.stderr

    # Counted by the worker first (cheap to ask), then every mail read once from the sink's Maildir.
    wait_until(lambda: sent(stack, campaign) >= len(recipients), timeout=240, interval=1.0, what="every send")
    mailed = Counter(recipient for recipient, _ in wait_until(lambda: arrivals(stack, campaign, started), timeout=10))
    assert set(mailed) == set(recipients) and max(mailed.values()) == 1  # each exactly once
    final = wait_until(lambda: (r := report(stack, campaign)) and r["sent"] == len(recipients) and r, timeout=60)
    assert final["skipped"] == 0


def test_a_cancelled_campaign_sends_nothing_more_and_reports_its_skipped_sends(stack: Settings, tmp_path: Path) -> None:
    campaign = unique("cancel")
    started = time.time() - 1
    recipients = send(stack, campaign, 6000, tmp_path)
    wait_until(lambda: sent(stack, campaign) >= 300, timeout=120, interval=0.05, what="sending under way")
    cancelled = cli(stack, "campaign", "cancel", campaign, "--reason", "the wrong audience")
    cancelled_at = time.time()
    assert cancelled.returncode == 0, cancelled.stderr
    resumed = cli(stack, "campaign", "resume", campaign)
    assert resumed.returncode == 1 and "cancelled" in resumed.stderr  # final

    def settled() -> dict[str, int] | None:
        counts = report(stack, campaign)
        return counts if counts["sent"] + counts["skipped"] == len(recipients) else None

    counts = wait_until(settled, timeout=120, what="every request sent or skipped")
    assert counts["skipped"] > 0 and counts["sent"] >= 300
    mailed = arrivals(stack, campaign, started)
    assert len(mailed) == counts["sent"]
    assert max(at for _, at in mailed) - cancelled_at < 1.0
    status = cli(stack, "campaign", "status", campaign, "--format", "json")
    assert '"state": "cancelled"' in status.stdout and '"progress": 1.0' in status.stdout, status.stdout
