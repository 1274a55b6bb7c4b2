"""Postmark webhooks: HTTP basic auth (constant-time), one record per request."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from producers.webhooks.common import SignatureError, WebhookError, attribution, event_id, from_iso, recipient
from schemas.events import AnyEvent, Bounce, BounceClass, Click, Complaint, Delivered, Open, Unsubscribe

# Postmark bounce types that say nothing about the address itself.
_SOFT_TYPES = {
    "Transient",
    "SoftBounce",
    "DnsError",
    "AutoResponder",
    "MailFrontier",
    "ChallengeVerification",
    "TemplateRenderingFailed",
    "Blocked",
    "SMTPApiError",
    "InboundError",
    "DMARCPolicy",
}


def verify(authorization: str, configured: str) -> None:
    if not authorization.lower().startswith("basic "):
        raise SignatureError("missing basic auth")
    try:
        presented = base64.b64decode(authorization[6:].strip(), validate=True)
    except ValueError:
        raise SignatureError("malformed basic auth") from None
    if not hmac.compare_digest(presented, configured.encode()):
        raise SignatureError("wrong basic auth credentials")


def parse(body: bytes) -> dict[str, Any]:
    try:
        record = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WebhookError("body is not JSON") from None
    if not isinstance(record, dict) or "RecordType" not in record:
        raise WebhookError("expected a Postmark record with RecordType")
    return record


def normalize(record: dict[str, Any]) -> AnyEvent | None:
    kind = str(record.get("RecordType"))
    rcpt = recipient(record.get("Email") or record.get("Recipient"))
    common = attribution(record.get("Metadata") or {})
    when = from_iso(
        record.get("BouncedAt") or record.get("DeliveredAt") or record.get("ReceivedAt") or record.get("ChangedAt")
    )
    ident = event_id("postmark", f"{record.get('ID', '')}:{record.get('MessageID', '')}", rcpt, kind)
    base: dict[str, Any] = {"event_id": ident, "occurred_at": when, "recipient": rcpt, **common}
    if kind == "Bounce":
        hard = str(record.get("Type")) not in _SOFT_TYPES
        return Bounce(
            **base,
            bounce_class=BounceClass.HARD if hard else BounceClass.SOFT,
            status="",
            diagnostic=str(record.get("Details") or record.get("Description") or "")[:1000],
            source="postmark",
        )
    if kind == "SpamComplaint":
        return Complaint(**base, feedback_type="abuse", source="postmark")
    if kind == "Delivery":
        return Delivered(**base, source="postmark")
    if kind == "Open":
        return Open(**base, user_agent=str(record.get("UserAgent") or "")[:512])
    if kind == "Click":
        return Click(**base, url=str(record.get("OriginalLink") or ""), user_agent=str(record.get("UserAgent") or ""))
    if kind == "SubscriptionChange" and record.get("SuppressSending"):
        return Unsubscribe(**base, method="webhook")
    return None
