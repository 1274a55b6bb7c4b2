"""What an SMTP answer means (pure): the events to publish and the retry to schedule.

2xx -> ``sent``. A refusal is classified by :func:`schemas.bounce_reasons.classify` (the same rules as
bounce mail and webhooks), and its reason decides what it does, not the class of its code:

- 5xx -> ``failed`` and a ``bounce`` of the reason's class at once: hard for an address failure
  (unknown user, unknown domain, ...: suppresses), block for a sender-side refusal (blocklist, spam,
  authentication, the sender address, ...: suppresses nobody), soft for a transient one (mailbox full);
- 4xx or no answer -> ``deferred`` (with its reason) and a retry with exponential backoff and jitter,
  until the attempts run out -> ``failed`` and a ``bounce`` of the reason's class (an address failure
  answered 4xx stays soft: the receiver itself said to try again).
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

import msgspec

from schemas.bounce_reasons import SmtpStage, Verdict, classify
from schemas.events import (
    AnyEvent,
    Deferred,
    Failed,
    SendRequest,
    SendSkipped,
    Sent,
    bounce_of,
    new_event_id,
)


@dataclass(frozen=True)
class SmtpOutcome:
    """``code`` 0 means no SMTP answer at all (connection refused, timeout); ``stage`` is the command
    the relay answered (a refusal at MAIL FROM is never about the recipient). ``after_content``: the
    message's content went out and the connection was lost before its answer, so the relay may have
    taken it; the retry is then a possible duplicate."""

    code: int
    reply: str
    stage: SmtpStage = SmtpStage.UNKNOWN
    after_content: bool = False


def lost_after_content(detail: str) -> SmtpOutcome:
    """No answer to a message's content: retried like any lost connection, counted as a possible duplicate."""
    return SmtpOutcome(0, f"connection lost after the message was sent: {detail}", SmtpStage.DATA, after_content=True)


# A message the delivery process gave back before its SMTP transaction began (its campaign was paused).
WITHDRAWN_REASON = "withdrawn"


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one request handed to the delivery process: its SMTP outcome, or the reasons it was
    not sent after all (suppressed meanwhile, unrenderable)."""

    outcome: SmtpOutcome | list[str]
    at: datetime


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
    # The relay may have the message already (its content went out unanswered).
    possible_duplicate: bool = False


def verdict_of(outcome: SmtpOutcome) -> Verdict:
    """The reason of a refusal (``outcome.code`` >= 300, or 0 for no answer)."""
    # No answer is our side's connection, whatever command it was lost at: never the recipient's fault.
    stage = SmtpStage.CONNECT if outcome.code == 0 else outcome.stage
    return classify(outcome.reply, code=outcome.code, stage=stage)


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


def _common(request: SendRequest, now: datetime, event_id: str | None = None) -> _Common:
    return {
        "event_id": event_id or new_event_id(),
        "occurred_at": now,
        "campaign_id": request.campaign_id,
        "message_id": request.message_id,
        "recipient": request.recipient,
        "list_id": request.list_id,
    }


def outcome_event_id(kind: str, message_id: str, attempt: int) -> str:
    """The id of a ``sent`` or ``send.skipped`` event, 32 hex characters like any other: one per message and
    attempt, so a redelivered request's outcome, published again, is counted once."""
    return hashlib.blake2b(f"{kind}/{message_id}/{attempt}".encode(), digest_size=16).hexdigest()


def decide(
    request: SendRequest,
    outcome: SmtpOutcome,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    if 200 <= outcome.code < 300:
        # Its id names the attempt: published again from the sent-log (:func:`sent_event`), it is the same event.
        sent_id = outcome_event_id("sent", request.message_id, request.attempt)
        return Decision(
            [
                Sent(
                    **_common(request, now, sent_id),
                    smtp_code=outcome.code,
                    smtp_reply=outcome.reply[:500],
                    attempt=request.attempt,
                )
            ],
            delivered=True,
        )
    common = _common(request, now)
    verdict = verdict_of(outcome)
    answer = f"{outcome.code} {outcome.reply}" if outcome.code else outcome.reply
    temporary = not 500 <= outcome.code < 600
    if temporary and request.attempt < policy.max_attempts:
        retry_at = now + timedelta(seconds=backoff_delay(request.attempt, policy, rng))
        retry = msgspec.structs.replace(request, attempt=request.attempt + 1, not_before=retry_at)
        deferred = Deferred(
            **common,
            smtp_code=outcome.code,
            smtp_reply=outcome.reply[:500],
            attempt=request.attempt,
            retry_at=retry_at,
            reason=verdict.reason,
        )
        return Decision([deferred], retry=retry, possible_duplicate=outcome.after_content)
    failed = Failed(
        **common, reason=verdict.reason, attempt=request.attempt, smtp_code=outcome.code, smtp_reply=outcome.reply[:500]
    )
    # A 4xx to the last attempt is still the receiver saying "later": soft even for an address failure.
    return Decision(
        [failed, bounce_of(verdict, f"smtp; {answer}", "smtp", **_common(request, now))],
        possible_duplicate=outcome.after_content,
    )


def skipped(request: SendRequest, reasons: list[str], now: datetime) -> SendSkipped:
    event_id = outcome_event_id("send.skipped", request.message_id, request.attempt)
    return SendSkipped(**_common(request, now, event_id), reason=",".join(reasons))


class SentState(enum.StrEnum):
    """A message's entry in the sent-log.

    ``PENDING`` from just before its SMTP transaction until the answer is recorded: a redelivered request
    still pending may have been mailed before a crash, so it is sent again (nothing lost) and counted as
    a possible duplicate; duplicates stay bounded by the batches in hand, and visible. ``NEVER``: never
    mailed, or not mailed after all (refused, skipped): a retry of it is no duplicate.
    """

    NEVER = ""
    PENDING = "pending"
    SENT = "sent"


SENT_PREFIX = "sent:"


def sent_log_value(state: SentState, sent: Sent | None = None) -> str:
    """The sent-log's value for ``state``; a sent message keeps its ``sent`` event.

    The mark and the event are separate Kafka records: a worker killed while a broker was down was seen to
    have its mark acknowledged and not the event (``make chaos``). The request's redelivery finds it sent and
    publishes the kept event again, under its own id: the reports count it once."""
    if state is SentState.SENT and sent is not None:
        return SENT_PREFIX + msgspec.json.encode(sent).decode()
    return str(state)


def sent_event(value: str | None) -> Sent | None:
    """The ``sent`` event a sent entry kept; None for others, and for marks written before one was kept."""
    if not value or not value.startswith(SENT_PREFIX + "{"):
        return None
    try:
        return msgspec.json.decode(value[len(SENT_PREFIX) :], type=Sent)
    except msgspec.DecodeError:
        return None


def sent_log_state(value: str | None) -> SentState:
    if not value:
        return SentState.NEVER
    return SentState.PENDING if value == SentState.PENDING else SentState.SENT
