from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec

from processors.delivery import RetryPolicy, SmtpOutcome, backoff_delay, decide, enhanced_status
from schemas.events import Bounce, Deferred, Failed, SendRequest, Sent

NOW = datetime(2026, 11, 26, tzinfo=UTC)
REQUEST = SendRequest(
    message_id="m",
    campaign_id="c",
    recipient="a@example.org",
    list_id="news",
    from_address="x@example.com",
    subject="s",
    html="",
    text="t",
    enqueued_at=NOW,
)
POLICY = RetryPolicy(max_attempts=3, base_seconds=2.0)


def test_2xx_is_sent() -> None:
    decision = decide(REQUEST, SmtpOutcome(250, "2.0.0 OK"), NOW, POLICY)
    assert decision.delivered and isinstance(decision.events[0], Sent) and decision.retry is None


def test_5xx_is_a_hard_bounce_with_enhanced_status() -> None:
    decision = decide(REQUEST, SmtpOutcome(550, "5.1.1 <a@example.org>: User unknown"), NOW, POLICY)
    (bounce,) = decision.events
    assert isinstance(bounce, Bounce) and bounce.bounce_class == "hard" and bounce.status == "5.1.1"
    assert not decision.delivered and decision.retry is None


def test_4xx_is_deferred_and_retried_with_backoff_until_attempts_run_out() -> None:
    decision = decide(REQUEST, SmtpOutcome(451, "4.3.0 try later"), NOW, POLICY, random.Random(1))
    (deferred,) = decision.events
    assert isinstance(deferred, Deferred) and decision.retry is not None
    assert decision.retry.attempt == 2 and decision.retry.not_before is not None
    assert 1.0 <= (decision.retry.not_before - NOW).total_seconds() <= 2.0
    last = decide(msgspec.structs.replace(REQUEST, attempt=3), SmtpOutcome(0, "connection refused"), NOW, POLICY)
    kinds = [type(e) for e in last.events]
    assert kinds == [Failed, Bounce] and last.retry is None
    assert last.events[1].bounce_class == "soft"  # type: ignore[union-attr]


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    rng = random.Random(7)
    policy = RetryPolicy(base_seconds=1.0, max_delay_seconds=10.0)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(10.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_enhanced_status_fallbacks() -> None:
    assert enhanced_status("452 4.2.2 Mailbox full", 452) == "4.2.2"
    assert enhanced_status("Service unavailable", 554) == "5.0.0"
    assert enhanced_status("", 0) == "4.4.1"
