from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.block_monitor import BlockMonitor, BlockPolicy
from schemas.bounce_reasons import BounceClass, BounceReason
from schemas.events import Bounce, Sent

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def sent(i: int, domain: str, at: datetime, campaign: str = "c") -> Sent:
    return Sent(event_id=f"s{i}", occurred_at=at, campaign_id=campaign, message_id=f"m{i}", recipient=f"r{i}@{domain}")


def blocked(i: int, domain: str, at: datetime, campaign: str = "c") -> Bounce:
    return Bounce(
        event_id=f"b{i}", occurred_at=at, campaign_id=campaign, message_id=f"m{i}", recipient=f"r{i}@{domain}",
        bounce_class=BounceClass.BLOCK, reason=BounceReason.BLOCKED, source="smtp",
        diagnostic="smtp; 554 5.7.1 Client host blocked using zen.spamhaus.org",
    )  # fmt: skip


def test_one_alert_when_a_domain_crosses_the_line_naming_it_and_the_top_diagnostic() -> None:
    monitor = BlockMonitor(BlockPolicy(rate=0.05, window_seconds=600, min_attempts=50))
    alerts = [monitor.observe(sent(i, "fine.example", T0)) for i in range(200)]
    alerts += [monitor.observe(blocked(1000 + i, "blocked.example", T0 + timedelta(seconds=i))) for i in range(80)]
    raised = [a for a in alerts if a is not None]
    assert len(raised) == 1
    (alert,) = raised
    assert alert.domain == "blocked.example" and alert.attempts == 50 and alert.blocked == 50
    assert "spamhaus" in alert.top_diagnostic


def test_below_min_attempts_or_the_rate_nothing_and_falling_back_rearms() -> None:
    monitor = BlockMonitor(BlockPolicy(rate=0.05, window_seconds=600, min_attempts=50))
    assert all(monitor.observe(blocked(i, "d.example", T0)) is None for i in range(49))
    monitor = BlockMonitor(BlockPolicy(rate=0.05, window_seconds=600, min_attempts=50))
    for i in range(100):
        assert monitor.observe(sent(i, "d.example", T0)) is None
    # Send-time blocks are attempts too: 5 of 105 is under 5 %, 6 of 106 over it.
    assert not any(monitor.observe(blocked(i, "d.example", T0)) is not None for i in range(5))
    assert monitor.observe(blocked(5, "d.example", T0)) is not None
    # A quarter of an hour of clean sends later the old blocks left the window; the next spike alerts again.
    later = T0 + timedelta(minutes=15)
    for i in range(200):
        monitor.observe(sent(2000 + i, "d.example", later))
    raised = [monitor.observe(blocked(3000 + i, "d.example", later)) for i in range(20)]
    assert sum(a is not None for a in raised) == 1


def test_blocks_of_one_campaign_are_judged_apart_from_another() -> None:
    monitor = BlockMonitor(BlockPolicy(rate=0.05, window_seconds=600, min_attempts=10))
    for i in range(10):
        monitor.observe(sent(i, "d.example", T0, campaign="a"))
    assert all(monitor.observe(blocked(100 + i, "d.example", T0, campaign="b")) is None for i in range(9))
