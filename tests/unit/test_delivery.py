from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec

from processors.delivery import RetryPolicy, SmtpOutcome, backoff_delay, decide, lost_after_content
from schemas.bounce_reasons import SmtpStage
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


def test_5xx_address_failure_is_failed_and_a_hard_bounce_with_enhanced_status() -> None:
    decision = decide(REQUEST, SmtpOutcome(550, "5.1.1 <a@example.org>: User unknown", SmtpStage.RCPT), NOW, POLICY)
    failed, bounce = decision.events
    assert isinstance(failed, Failed) and failed.reason == "unknown_user" and failed.smtp_code == 550
    assert isinstance(bounce, Bounce) and bounce.bounce_class == "hard" and bounce.status == "5.1.1"
    assert bounce.reason == "unknown_user" and bounce.mailbox_provider == "other"
    assert not decision.delivered and decision.retry is None


def test_5xx_block_is_failed_with_its_reason_and_suppresses_nobody() -> None:
    reply = "5.7.1 Service unavailable; Client host [203.0.113.25] blocked using zen.spamhaus.org"
    gmail = msgspec.structs.replace(REQUEST, recipient="a@gmail.com")
    failed, bounce = decide(gmail, SmtpOutcome(554, reply, SmtpStage.RCPT), NOW, POLICY).events
    assert isinstance(failed, Failed) and failed.reason == "blocked"
    assert isinstance(bounce, Bounce) and bounce.bounce_class == "block" and bounce.mailbox_provider == "gmail"


def test_anything_refused_at_mail_from_is_the_senders() -> None:
    decision = decide(REQUEST, SmtpOutcome(550, "5.1.1 User unknown", SmtpStage.MAIL), NOW, POLICY)
    assert decision.events[1].bounce_class == "block"  # type: ignore[union-attr]
    assert decision.events[1].reason == "sender_rejected"  # type: ignore[union-attr]


def test_5xx_mailbox_full_is_soft_without_retry() -> None:
    decision = decide(REQUEST, SmtpOutcome(552, "5.2.2 Mailbox full", SmtpStage.RCPT), NOW, POLICY)
    assert decision.retry is None and decision.events[1].bounce_class == "soft"  # type: ignore[union-attr]


def test_4xx_is_deferred_and_retried_with_backoff_until_attempts_run_out() -> None:
    decision = decide(REQUEST, SmtpOutcome(451, "4.3.0 try later"), NOW, POLICY, random.Random(1))
    (deferred,) = decision.events
    assert isinstance(deferred, Deferred) and decision.retry is not None and deferred.reason == "remote_error"
    assert decision.retry.attempt == 2 and decision.retry.not_before is not None
    assert 1.0 <= (decision.retry.not_before - NOW).total_seconds() <= 2.0
    third = msgspec.structs.replace(REQUEST, attempt=3)
    last = decide(third, SmtpOutcome(452, "4.2.2 Mailbox full", SmtpStage.RCPT), NOW, POLICY)
    kinds = [type(e) for e in last.events]
    assert kinds == [Failed, Bounce] and last.retry is None
    assert last.events[1].bounce_class == "soft"  # type: ignore[union-attr]
    # Our own relay out of reach says nothing about the recipient: the last attempt suppresses nobody.
    unreachable = decide(third, SmtpOutcome(0, "connection refused"), NOW, POLICY).events[1]
    assert unreachable.bounce_class == "block" and unreachable.reason == "relay_unavailable"  # type: ignore[union-attr]
    # An address failure answered 4xx stays soft: the receiver said to try again.
    temporary = decide(third, SmtpOutcome(450, "4.1.1 <a@example.org>: User unknown", SmtpStage.RCPT), NOW, POLICY)
    assert temporary.events[1].bounce_class == "soft"  # type: ignore[union-attr]


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    rng = random.Random(7)
    policy = RetryPolicy(base_seconds=1.0, max_delay_seconds=10.0)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(10.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_a_connection_lost_after_the_content_is_retried_as_a_possible_duplicate_and_never_a_bounce() -> None:
    lost = lost_after_content("Connection lost")
    first = decide(REQUEST, lost, NOW, POLICY)
    assert isinstance(first.events[0], Deferred) and first.retry is not None and first.possible_duplicate
    last = decide(msgspec.structs.replace(REQUEST, attempt=POLICY.max_attempts), lost, NOW, POLICY)
    bounce = last.events[1]
    assert isinstance(bounce, Bounce) and bounce.bounce_class == "block" and last.possible_duplicate
    # A connection that failed before anything went out is no possible duplicate.
    refused = decide(REQUEST, SmtpOutcome(0, "connection failed: refused", SmtpStage.CONNECT), NOW, POLICY)
    assert refused.retry is not None and not refused.possible_duplicate
