"""SendGrid Event Webhook: ECDSA (P-256, SHA256) over timestamp + body, batched event arrays."""

from __future__ import annotations

import base64
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from producers.webhooks.common import (
    SignatureError,
    WebhookError,
    attribution,
    event_id,
    from_unix,
    provider_verdict,
    recipient,
)
from schemas.bounce_reasons import BounceClass, BounceReason, Verdict, classify
from schemas.events import AnyEvent, Click, Complaint, Deferred, Delivered, Open, Unsubscribe, bounce_of
from schemas.json_input import NotJson, parse_json

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def load_public_key(configured: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    key = load_der_public_key(base64.b64decode(configured))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("MAILPULSE_SENDGRID_PUBLIC_KEY is not an EC public key")
    return key


def verify(key: ec.EllipticCurvePublicKey, body: bytes, signature: str, timestamp: str, max_age: int) -> None:
    if not signature or not timestamp:
        raise SignatureError("missing SendGrid signature headers")
    try:
        sent_at = int(timestamp)
        der = base64.b64decode(signature, validate=True)
    except ValueError:
        raise SignatureError("malformed SendGrid signature headers") from None
    if abs(time.time() - sent_at) > max_age:
        raise SignatureError("SendGrid timestamp outside the allowed window")
    try:
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("SendGrid signature does not verify") from None


def parse(body: bytes) -> list[dict[str, Any]]:
    try:
        events = parse_json(body)
    except NotJson as exc:
        raise WebhookError(f"body is {exc}") from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise WebhookError("expected a JSON array of event objects")
    return events


# SendGrid's bounce_classification (its own classifier) -> reason; "Unclassified" leaves it to the text.
_CLASSIFICATIONS = {
    "invalid address": BounceReason.UNKNOWN_USER,
    "technical": BounceReason.REMOTE_ERROR,
    "content": BounceReason.POLICY,
    "reputation": BounceReason.BLOCKED,
    "frequency or volume": BounceReason.RATE_LIMITED,
    "mailbox unavailable": BounceReason.MAILBOX_DISABLED,
}
# "dropped": SendGrid did not send at all; these reasons name its own suppression lists.
_DROPPED = {
    "bounced address": BounceReason.PROVIDER_SUPPRESSED,
    "invalid": BounceReason.INVALID_ADDRESS,
}


def sendgrid_verdict(raw: dict[str, Any]) -> Verdict:
    text, status = str(raw.get("reason") or ""), str(raw.get("status") or "")
    classified = _CLASSIFICATIONS.get(str(raw.get("bounce_classification") or "").strip().lower())
    if classified is not None:
        return Verdict(classified, status, f"sendgrid:{raw.get('bounce_classification')}")
    if str(raw.get("type", "bounce")) == "blocked":
        return provider_verdict(text, status, default=BounceReason.BLOCKED, within=BounceClass.BLOCK)
    return provider_verdict(text, status)


def normalize(raw: dict[str, Any]) -> AnyEvent | None:
    kind = str(raw.get("event", ""))
    rcpt = recipient(raw.get("email"))
    common = attribution(raw, str(raw.get("smtp-id", "")))
    ident = event_id("sendgrid", str(raw.get("sg_event_id") or raw.get("sg_message_id") or ""), rcpt, kind)
    base: dict[str, Any] = {
        "event_id": ident,
        "occurred_at": from_unix(raw.get("timestamp")),
        "recipient": rcpt,
        **common,
    }
    if kind == "bounce":
        return bounce_of(sendgrid_verdict(raw), str(raw.get("reason") or ""), "sendgrid", **base)
    if kind == "dropped":
        why = str(raw.get("reason") or "")
        if why.lower() == "unsubscribed address":
            return Unsubscribe(**base, method="webhook")
        if why.lower() == "spam reporting address":
            return Complaint(**base, feedback_type="abuse", source="sendgrid")
        # Anything else SendGrid drops is about the sending (a bad header, a rate), not the address.
        verdict = Verdict(_DROPPED.get(why.lower(), BounceReason.POLICY), "", f"sendgrid:dropped:{why}")
        return bounce_of(verdict, why, "sendgrid", **base)
    if kind == "deferred":
        response = str(raw.get("response") or "")
        return Deferred(
            **base, smtp_reply=response[:500], attempt=int(raw.get("attempt") or 1), reason=classify(response).reason
        )
    if kind == "delivered":
        return Delivered(**base, source="sendgrid")
    if kind == "spamreport":
        return Complaint(**base, feedback_type="abuse", source="sendgrid")
    if kind == "open":
        return Open(**base, user_agent=str(raw.get("useragent") or "")[:512])
    if kind == "click":
        return Click(**base, url=str(raw.get("url") or ""), user_agent=str(raw.get("useragent") or "")[:512])
    if kind in ("unsubscribe", "group_unsubscribe"):
        return Unsubscribe(**base, method="webhook")
    return None  # processed, group_resubscribe: nothing to record
