"""Mailgun webhooks: HMAC-SHA256 over timestamp + token, a timestamp window, replayed tokens refused."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from typing import Any

from producers.webhooks.common import (
    SignatureError,
    WebhookError,
    attribution,
    event_id,
    from_unix,
    provider_verdict,
    recipient,
)
from schemas.bounce_reasons import BounceReason, Verdict, classify
from schemas.events import AnyEvent, Click, Complaint, Deferred, Delivered, Open, Unsubscribe, bounce_of
from schemas.json_input import NotJson, parse_json

# Mailgun's failure ``reason`` -> what it means when it names more than "the receiver refused".
_REASONS = {
    "suppress-bounce": BounceReason.PROVIDER_SUPPRESSED,
    "espblock": BounceReason.BLOCKED,
    "old": BounceReason.EXPIRED,
}


class ReplayGuard:
    """Tokens seen within the window; a second use is a replay. Bounded in memory."""

    def __init__(self, window: int, max_tokens: int = 100_000) -> None:
        self.window = window
        self.max_tokens = max_tokens
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen and (next(iter(self._seen.values())) < now - self.window or len(self._seen) > self.max_tokens):
            self._seen.popitem(last=False)

    def seen(self, token: str, now: float) -> bool:
        with self._lock:
            self._expire(now)
            return token in self._seen

    def remember(self, token: str, now: float) -> None:
        """A token whose delivery was accepted (published): a second use of it is a replay."""
        with self._lock:
            self._expire(now)
            self._seen[token] = now


def verify(signing_key: str, signature: dict[str, Any], guard: ReplayGuard, max_age: int) -> None:
    timestamp, token, digest = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and digest):
        raise SignatureError("missing Mailgun signature")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    # Bytes: compare_digest refuses str holding non-ASCII, and a signature is whatever the caller sent.
    if not hmac.compare_digest(expected.encode(), digest.encode("utf-8", "surrogatepass")):
        raise SignatureError("Mailgun signature does not verify")
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise SignatureError("malformed Mailgun timestamp") from None
    now = time.time()
    if abs(now - sent_at) > max_age:
        raise SignatureError("Mailgun timestamp outside the allowed window")
    if guard.seen(token, now):
        raise SignatureError("replayed Mailgun token")


def parse(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        payload = parse_json(body)
    except NotJson as exc:
        raise WebhookError(f"body is {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookError("expected a JSON object")
    signature, data = payload.get("signature"), payload.get("event-data")
    if not isinstance(signature, dict) or not isinstance(data, dict):
        raise WebhookError("expected 'signature' and 'event-data' objects")
    return signature, data


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def normalize(data: dict[str, Any]) -> AnyEvent | None:
    kind = str(data.get("event", ""))
    rcpt = recipient(data.get("recipient"))
    headers = (data.get("message") or {}).get("headers") or {}
    common = attribution(data.get("user-variables") or {}, str(headers.get("message-id", "")))
    status = data.get("delivery-status") or {}
    base: dict[str, Any] = {
        "event_id": event_id("mailgun", str(data.get("id", "")), rcpt, kind),
        "occurred_at": from_unix(data.get("timestamp")),
        "recipient": rcpt,
        **common,
    }
    diagnostic = " ".join(str(status.get(k) or "") for k in ("message", "description") if status.get(k))[:1000]
    enhanced, code = str(status.get("enhanced-code") or ""), _int(status.get("code"))
    if kind == "failed":
        reason = str(data.get("reason") or "")
        if reason == "suppress-unsubscribe":
            return Unsubscribe(**base, method="webhook")
        if reason == "suppress-complaint":
            return Complaint(**base, feedback_type="abuse", source="mailgun")
        if data.get("severity") == "permanent":
            known = _REASONS.get(reason)
            verdict = (
                Verdict(known, enhanced, f"mailgun:{reason}")
                if known is not None
                # "bounce": Mailgun's word for a hard bounce; the receiver's text still decides what kind.
                else provider_verdict(
                    diagnostic,
                    enhanced,
                    code,
                    default=BounceReason.UNKNOWN_USER if reason == "bounce" else BounceReason.UNDETERMINED,
                )
            )
            return bounce_of(verdict, diagnostic, "mailgun", **base)
        return Deferred(
            **base,
            smtp_code=code,
            smtp_reply=diagnostic[:500],
            attempt=_int(status.get("attempt-no")) or 1,
            reason=classify(diagnostic, enhanced, code).reason,
        )
    if kind == "delivered":
        return Delivered(**base, source="mailgun")
    if kind == "complained":
        return Complaint(**base, feedback_type="abuse", source="mailgun")
    if kind == "opened":
        return Open(**base, user_agent=str((data.get("client-info") or {}).get("user-agent") or "")[:512])
    if kind == "clicked":
        return Click(**base, url=str(data.get("url") or ""))
    if kind == "unsubscribed":
        return Unsubscribe(**base, method="webhook")
    return None
