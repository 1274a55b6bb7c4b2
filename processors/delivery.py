"""What an SMTP answer means (pure): the events to publish and the retry to schedule.

2xx -> ``sent``; 5xx -> a hard ``bounce`` at once (feeds suppression);
4xx or no connection -> ``deferred`` and a retry with exponential backoff and
jitter, until the attempts run out -> ``failed`` and a soft ``bounce``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

import msgspec

from schemas.events import (
    AnyEvent,
    Bounce,
    BounceClass,
    Deferred,
    Failed,
    SendRequest,
    SendSkipped,
    Sent,
    new_event_id,
)

_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class SmtpOutcome:
    """``code`` 0 means no SMTP answer at all (connection refused, timeout)."""

    code: int
    reply: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 1.0
    max_delay_seconds: float = 3600.0


@dataclass(frozen=True)
class Decision:
    events: list[AnyEvent]
    retry: SendRequest | None = None
    delivered: bool = False


def enhanced_status(reply: str, code: int) -> str:
    match = _ENHANCED.search(reply)
    if match:
        return match.group(1)
    return f"{code // 100}.0.0" if code else "4.4.1"


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: between half and all of base * 2**(attempt-1)."""
    ceiling = min(policy.max_delay_seconds, policy.base_seconds * 2 ** (attempt - 1))
    return ceiling * (0.5 + (rng or random).random() / 2)


class _Common(TypedDict):
    event_id: str
    occurred_at: datetime
    campaign_id: str
    message_id: str
    recipient: str | None
    list_id: str


def _common(request: SendRequest, now: datetime) -> _Common:
    return {
        "event_id": new_event_id(),
        "occurred_at": now,
        "campaign_id": request.campaign_id,
        "message_id": request.message_id,
        "recipient": request.recipient,
        "list_id": request.list_id,
    }


def decide(
    request: SendRequest,
    outcome: SmtpOutcome,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    common = _common(request, now)
    if 200 <= outcome.code < 300:
        return Decision(
            [
                Sent(
                    **common,
                    smtp_code=outcome.code,
                    smtp_reply=outcome.reply[:500],
                    attempt=request.attempt,
                )
            ],
            delivered=True,
        )
    status = enhanced_status(outcome.reply, outcome.code)
    if 500 <= outcome.code < 600:
        return Decision(
            [
                Bounce(
                    **common,
                    bounce_class=BounceClass.HARD,
                    status=status,
                    diagnostic=f"smtp; {outcome.code} {outcome.reply}"[:1000],
                    source="smtp",
                )
            ]
        )
    if request.attempt < policy.max_attempts:
        retry_at = now + timedelta(seconds=backoff_delay(request.attempt, policy, rng))
        retry = msgspec.structs.replace(request, attempt=request.attempt + 1, not_before=retry_at)
        deferred = Deferred(
            **common,
            smtp_code=outcome.code,
            smtp_reply=outcome.reply[:500],
            attempt=request.attempt,
            retry_at=retry_at,
        )
        return Decision([deferred], retry=retry)
    failed = Failed(**common, reason=f"{outcome.code} {outcome.reply}"[:500], attempt=request.attempt)
    soft = Bounce(
        **_common(request, now),
        bounce_class=BounceClass.SOFT,
        status=status,
        diagnostic=f"smtp; {outcome.code} {outcome.reply}"[:1000],
        source="smtp",
    )
    return Decision([failed, soft])


def skipped(request: SendRequest, reasons: list[str], now: datetime) -> SendSkipped:
    return SendSkipped(**_common(request, now), reason=",".join(reasons))


# Sent-log values: a message is "pending" from just before its SMTP transaction until the answer is
# recorded. A redelivered request still pending may have been mailed before a crash: it is sent again
# (nothing lost) and counted as a possible duplicate, so duplicates stay bounded by one batch and visible.
SENT_LOG_PENDING = "pending"


def sent_log_value(sent_at: datetime) -> str:
    return f"sent:{sent_at.isoformat()}"


def sent_log_state(value: str | None) -> str:
    """``""`` (never sent), ``"pending"`` or ``"sent"``."""
    if not value:
        return ""
    return SENT_LOG_PENDING if value == SENT_LOG_PENDING else "sent"
