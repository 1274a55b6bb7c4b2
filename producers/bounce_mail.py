"""Bounce and complaint mail -> bounce, delay and complaint records (pure).

RFC 3464 delivery-status reports are read per recipient (Action, Status,
Diagnostic-Code); RFC 5965 ARF feedback reports become complaints; anything
else is scanned by flufl.bounce for failed addresses, with the status taken
from the text. Classification follows the RFC 3463 class: 5.x.x hard, 4.x.x
soft, mailbox-full codes (x.2.2) soft, ``Action: delayed`` a delay.
"""

from __future__ import annotations

import email
import email.policy
import enum
import re
from dataclasses import dataclass, field
from email.message import Message

from flufl.bounce import all_failures

from schemas.attribution import (
    CAMPAIGN_HEADER,
    MESSAGE_HEADER,
    message_id_from_header,
    message_id_from_verp,
)

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([45])\d\d\b")
_MAILBOX_FULL = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (disk )?space", re.I)
_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")


class Outcome(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    DELAY = "delay"
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class BounceRecord:
    recipient: str | None
    outcome: Outcome
    status: str = ""
    diagnostic: str = ""
    feedback_type: str = ""


@dataclass
class ParsedMail:
    report: str  # "dsn", "arf", "heuristic" or "none"
    records: list[BounceRecord] = field(default_factory=list)
    message_id: str | None = None
    campaign_id: str | None = None

    @property
    def is_bounce(self) -> bool:
        return bool(self.records)


def classify_status(status: str, action: str = "", diagnostic: str = "") -> Outcome | None:
    """RFC 3463 class of a status (and RFC 3464 action); None when it is no failure."""
    action = action.strip().lower()
    if action == "delayed":
        return Outcome.DELAY
    if action in ("delivered", "relayed", "expanded"):
        return None
    match = _STATUS.search(status)
    if match is None:
        return Outcome.HARD if action == "failed" else None
    klass, subject, detail = match.groups()
    if klass == "2":
        return None
    if (subject, detail) == ("2", "2") or _MAILBOX_FULL.search(diagnostic):
        return Outcome.SOFT
    return Outcome.HARD if klass == "5" else Outcome.SOFT


def _address(value: str | None) -> str | None:
    if not value:
        return None
    # "rfc822; user@example.org" or "<user@example.org>"
    value = value.split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else None


def _part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _original_headers(msg: Message) -> Message | None:
    for content_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
        part = _part(msg, content_type)
        if part is None:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        text = part.get_payload(decode=True)
        return email.message_from_bytes(text if isinstance(text, bytes) else b"", policy=email.policy.compat32)
    return None


def _attribute(parsed: ParsedMail, msg: Message, envelope_to: list[str]) -> None:
    for address in [
        *envelope_to,
        *(msg.get_all("Delivered-To") or []),
        *(msg.get_all("X-Original-To") or []),
        str(msg.get("To", "")),
    ]:
        found = message_id_from_verp(str(address))
        if found:
            parsed.message_id = found
            break
    original = _original_headers(msg)
    if original is not None:
        parsed.campaign_id = str(original.get(CAMPAIGN_HEADER, "") or "").strip() or None
        parsed.message_id = (
            parsed.message_id
            or (str(original.get(MESSAGE_HEADER, "") or "").strip() or None)
            or (message_id_from_header(str(original.get("Message-ID", ""))))
        )


def _delivery_status(msg: Message) -> list[BounceRecord]:
    part = _part(msg, "message/delivery-status")
    if part is None:
        return []
    payload = part.get_payload()
    blocks: list[Message] = (
        [b for b in payload if isinstance(b, Message)]
        if isinstance(payload, list)
        else [email.message_from_string(block) for block in str(payload).split("\n\n") if block.strip()]
    )
    records = []
    for block in blocks[1:]:  # the first block is per-message
        recipient = _address(block.get("Final-Recipient")) or _address(block.get("Original-Recipient"))
        status = str(block.get("Status", "")).strip()
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        outcome = classify_status(status, str(block.get("Action", "")), diagnostic)
        found = _STATUS.search(status)
        if outcome is not None:
            records.append(BounceRecord(recipient, outcome, found.group(0) if found else "", diagnostic))
    return records


def _feedback(msg: Message) -> list[BounceRecord]:
    part = _part(msg, "message/feedback-report")
    if part is None:
        return []
    payload = part.get_payload()
    first = payload[0] if isinstance(payload, list) and payload else None
    fields = first if isinstance(first, Message) else email.message_from_string(str(payload))
    feedback_type = str(fields.get("Feedback-Type", "abuse")).strip().lower()
    recipient = _address(fields.get("Original-Rcpt-To"))
    if recipient is None:
        original = _original_headers(msg)
        recipient = _address(str(original.get("To", ""))) if original is not None else None
    return [BounceRecord(recipient, Outcome.COMPLAINT, feedback_type=feedback_type)]


def _text(msg: Message) -> str:
    chunks = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(payload.decode(part.get_content_charset() or "latin-1", "replace"))
    return "\n".join(chunks)


def _heuristic(msg: Message) -> list[BounceRecord]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # some flufl.bounce detectors raise on odd mail; that mail is simply no bounce
        return []
    if not temporary and not permanent:
        return []
    text = _text(msg)
    records = []
    for raw, default in [(a, Outcome.SOFT) for a in temporary] + [(a, Outcome.HARD) for a in permanent]:
        address = raw.decode("utf-8", "replace").lower()
        # The status nearest to the address, else the first one in the text.
        at = text.lower().find(address)
        window = text[at : at + 600] if at >= 0 else text
        status_match = _STATUS.search(window) or _STATUS.search(text)
        status = status_match.group(0) if status_match else ""
        line = next((ln.strip() for ln in window.splitlines() if _SMTP_CODE.search(ln) or _STATUS.search(ln)), "")
        outcome = classify_status(status, diagnostic=line) if status else default
        if status == "" and _MAILBOX_FULL.search(window):
            outcome = Outcome.SOFT
        if outcome is not None:
            records.append(BounceRecord(address, outcome, status, line[:500]))
    return records


def parse_mail(raw: bytes, envelope_to: list[str] | None = None) -> ParsedMail:
    """Parse one returned message. Never raises on bad input: unknown mail yields report="none"."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower()
    if msg.get_content_type() == "multipart/report" and report_type == "feedback-report":
        parsed = ParsedMail("arf", _feedback(msg))
    elif msg.get_content_type() == "multipart/report" and report_type == "delivery-status":
        parsed = ParsedMail("dsn", _delivery_status(msg))
    else:
        parsed = ParsedMail("heuristic", _heuristic(msg))
        if not parsed.records:
            parsed.report = "none"
    _attribute(parsed, msg, envelope_to or [])
    return parsed
