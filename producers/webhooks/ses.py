"""Amazon SES notifications through SNS: signature versions 1 and 2, subscription confirmation.

The signing certificate is fetched only from an ``https://sns.<region>.amazonaws.com/*.pem``
URL (host pinned) and cached; the signature is RSA PKCS#1 v1.5 over the canonical
"Key\\nValue\\n" string, SHA1 for version 1 and SHA256 for version 2.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from producers.webhooks.common import (
    SignatureError,
    VerificationUnavailable,
    WebhookError,
    attribution,
    event_id,
    from_iso,
    provider_verdict,
    recipient,
)
from schemas.attribution import CAMPAIGN_HEADER, MESSAGE_HEADER
from schemas.bounce_reasons import BounceReason, Verdict
from schemas.events import AnyEvent, Click, Complaint, Delivered, Open, bounce_of
from schemas.json_input import NotJson, parse_json

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}

CertificateFetcher = Callable[[str], bytes]

# SES bounceType/bounceSubType -> the reason when the diagnostic says nothing more, and whether SES's
# word fixes it (a "NoEmail" is an unknown address whatever the text; a "General" is what the text says).
_SES_BOUNCES: dict[tuple[str, str], tuple[BounceReason, bool]] = {
    ("Permanent", "General"): (BounceReason.UNKNOWN_USER, False),
    ("Permanent", "NoEmail"): (BounceReason.UNKNOWN_USER, True),
    ("Permanent", "Suppressed"): (BounceReason.PROVIDER_SUPPRESSED, True),
    ("Permanent", "OnAccountSuppressionList"): (BounceReason.PROVIDER_SUPPRESSED, True),
    ("Transient", "General"): (BounceReason.UNDETERMINED, False),
    ("Transient", "MailboxFull"): (BounceReason.MAILBOX_FULL, True),
    ("Transient", "MessageTooLarge"): (BounceReason.TOO_BIG, True),
    ("Transient", "ContentRejected"): (BounceReason.POLICY, True),
    ("Transient", "AttachmentRejected"): (BounceReason.POLICY, True),
    ("Undetermined", "Undetermined"): (BounceReason.UNDETERMINED, False),
}


def ses_verdict(bounce_type: str, sub_type: str, status: str, diagnostic: str) -> Verdict:
    default, fixed = _SES_BOUNCES.get((bounce_type, sub_type), (BounceReason.UNDETERMINED, False))
    if fixed:
        return Verdict(default, status, f"ses:{bounce_type}/{sub_type}")
    # A "General" permanent bounce blocked by the receiver's blocklist is still a block: the text decides.
    return provider_verdict(diagnostic, status, default=default)


def is_sns_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "https" and bool(_SNS_HOST.match(parsed.hostname or "")) and parsed.port in (None, 443)


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise WebhookError(f"unknown SNS message type {message.get('Type')!r}")
    parts = []
    for key in fields:
        if key in message and message[key] is not None:
            parts.append(f"{key}\n{message[key]}\n")
    return "".join(parts).encode()


def verify(message: dict[str, Any], fetch_certificate: CertificateFetcher) -> None:
    cert_url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    if not is_sns_url(cert_url) or not cert_url.endswith(".pem"):
        raise SignatureError("signing certificate URL is not an SNS https URL")
    version = str(message.get("SignatureVersion", ""))
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise SignatureError("unsupported SNS signature version")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        raise SignatureError("signature is not base64") from None
    try:
        pem = fetch_certificate(cert_url)
    except Exception as exc:  # the fetcher's network errors, whatever its client
        raise VerificationUnavailable(f"SNS signing certificate not available: {exc}") from None
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SignatureError("SNS signing certificate is not a PEM certificate") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("SNS certificate is not RSA")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SignatureError("SNS signature does not verify") from None


def parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        message = parse_json(body)
    except NotJson as exc:
        raise WebhookError(f"body is {exc}") from None
    if not isinstance(message, dict) or "Type" not in message:
        raise WebhookError("not an SNS message")
    return message


def _headers(mail: dict[str, Any]) -> dict[str, str]:
    found = {}
    for header in mail.get("headers") or []:
        if isinstance(header, dict):
            found[str(header.get("name", "")).lower()] = str(header.get("value", ""))
    for name, values in (mail.get("tags") or {}).items():
        if isinstance(values, list) and values:
            found[name.lower()] = str(values[0])
    return found


def normalize(notification: dict[str, Any]) -> list[AnyEvent]:
    """SES notification (feedback or event publishing) -> events."""
    kind = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") or {}
    if not isinstance(mail, dict):
        raise WebhookError("SES notification without mail")
    headers = _headers(mail)
    metadata = {
        "mailpulse_campaign": headers.get(CAMPAIGN_HEADER.lower()) or headers.get("mailpulse_campaign"),
        "mailpulse_message": headers.get(MESSAGE_HEADER.lower()) or headers.get("mailpulse_message"),
        "mailpulse_list": headers.get("mailpulse_list"),
    }
    common = attribution(metadata, str((mail.get("commonHeaders") or {}).get("messageId", "")))
    ses_id = str(mail.get("messageId", ""))
    events: list[AnyEvent] = []
    if kind == "Bounce":
        report = notification.get("bounce") or {}
        when = from_iso(report.get("timestamp"))
        bounce_type, sub_type = str(report.get("bounceType") or ""), str(report.get("bounceSubType") or "")
        for entry in report.get("bouncedRecipients") or []:
            rcpt = recipient(entry.get("emailAddress"))
            diagnostic = str(entry.get("diagnosticCode") or "")
            verdict = ses_verdict(bounce_type, sub_type, str(entry.get("status") or ""), diagnostic)
            base = {
                "event_id": event_id("ses", f"{ses_id}:{report.get('feedbackId', '')}", rcpt, "bounce"),
                "occurred_at": when,
                "recipient": rcpt,
                **common,
            }
            events.append(bounce_of(verdict, diagnostic or f"{bounce_type}/{sub_type}", "ses", **base))
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        when = from_iso(complaint.get("timestamp"))
        for entry in complaint.get("complainedRecipients") or []:
            rcpt = recipient(entry.get("emailAddress"))
            events.append(
                Complaint(
                    event_id=event_id("ses", f"{ses_id}:{complaint.get('feedbackId', '')}", rcpt, "complaint"),
                    occurred_at=when,
                    recipient=rcpt,
                    **common,
                    feedback_type=str(complaint.get("complaintFeedbackType") or "abuse"),
                    source="ses",
                )
            )
    elif kind == "Delivery":
        delivery = notification.get("delivery") or {}
        when = from_iso(delivery.get("timestamp"))
        for address in delivery.get("recipients") or []:
            rcpt = recipient(address)
            events.append(
                Delivered(
                    event_id=event_id("ses", ses_id, rcpt, "delivered"),
                    occurred_at=when,
                    recipient=rcpt,
                    **common,
                    source="ses",
                )
            )
    elif kind in ("Open", "Click"):
        detail = notification.get(kind.lower()) or {}
        rcpt = recipient((mail.get("destination") or [None])[0])
        when = from_iso(detail.get("timestamp"))
        provider_id = f"{ses_id}:{detail.get('timestamp', '')}:{detail.get('link', '')}"
        if kind == "Open":
            events.append(
                Open(
                    event_id=event_id("ses", provider_id, rcpt, "open"),
                    occurred_at=when,
                    recipient=rcpt,
                    **common,
                    user_agent=str(detail.get("userAgent") or "")[:512],
                )
            )
        else:
            events.append(
                Click(
                    event_id=event_id("ses", provider_id, rcpt, "click"),
                    occurred_at=when,
                    recipient=rcpt,
                    **common,
                    url=str(detail.get("link") or ""),
                    user_agent=str(detail.get("userAgent") or "")[:512],
                )
            )
    return events
