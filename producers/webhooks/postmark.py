"""Postmark webhooks: HTTP basic auth (constant-time), one record per request."""

from __future__ import annotations

import base64
import hmac
from typing import Any

from producers.webhooks.common import (
    SignatureError,
    WebhookError,
    attribution,
    event_id,
    from_iso,
    provider_verdict,
    recipient,
)
from schemas.bounce_reasons import BounceClass, BounceReason, Verdict
from schemas.events import AnyEvent, Click, Complaint, Delivered, Open, Unsubscribe, bounce_of
from schemas.json_input import NotJson, parse_json

# Postmark bounce Type -> (reason when the details say nothing more, the class Postmark's type fixes).
_TYPES: dict[str, tuple[BounceReason, BounceClass | None]] = {
    "HardBounce": (BounceReason.UNKNOWN_USER, None),
    "SoftBounce": (BounceReason.UNDETERMINED, None),
    "Transient": (BounceReason.UNDETERMINED, None),
    "Unknown": (BounceReason.UNDETERMINED, None),
    "BadEmailAddress": (BounceReason.INVALID_ADDRESS, BounceClass.HARD),
    "AddressChange": (BounceReason.ADDRESS_MOVED, BounceClass.HARD),
    "ManuallyDeactivated": (BounceReason.PROVIDER_SUPPRESSED, BounceClass.HARD),
    "DnsError": (BounceReason.NETWORK_ERROR, BounceClass.SOFT),
    "SpamNotification": (BounceReason.SPAM, BounceClass.BLOCK),
    "VirusNotification": (BounceReason.VIRUS, BounceClass.BLOCK),
    "Blocked": (BounceReason.BLOCKED, BounceClass.BLOCK),
    "DMARCPolicy": (BounceReason.AUTH_FAILURE, BounceClass.BLOCK),
    "SMTPApiError": (BounceReason.POLICY, BounceClass.BLOCK),
    "InboundError": (BounceReason.POLICY, BounceClass.BLOCK),
    "TemplateRenderingFailed": (BounceReason.POLICY, BounceClass.BLOCK),
    "MailFrontier": (BounceReason.SPAM, BounceClass.BLOCK),
}
# Records Postmark sends as bounces that are no delivery failure.
_NOT_FAILURES = {"AutoResponder", "ChallengeVerification", "Subscribe", "OpenRelayTest", "Unconfirmed"}


def postmark_verdict(bounce_type: str, details: str) -> Verdict:
    default, within = _TYPES.get(bounce_type, (BounceReason.UNDETERMINED, None))
    if within is BounceClass.HARD or within is BounceClass.SOFT:
        return Verdict(default, "", f"postmark:{bounce_type}")
    return provider_verdict(details, default=default, within=within)


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
        record = parse_json(body)
    except NotJson as exc:
        raise WebhookError(f"body is {exc}") from None
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
        bounce_type = str(record.get("Type") or "")
        if bounce_type in _NOT_FAILURES:
            return None
        if bounce_type == "SpamComplaint":
            return Complaint(**base, feedback_type="abuse", source="postmark")
        if bounce_type == "Unsubscribe":
            return Unsubscribe(**base, method="webhook")
        details = str(record.get("Details") or "")
        verdict = postmark_verdict(bounce_type, details)
        return bounce_of(verdict, details or str(record.get("Description") or ""), "postmark", **base)
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
