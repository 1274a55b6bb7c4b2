"""Bounce and complaint mail -> bounce, delay and complaint records (pure).

RFC 3464 delivery-status reports are read per recipient (Action, Status, Diagnostic-Code); RFC 5965
ARF feedback reports become complaints (abuse, fraud, other), and DMARC failure reports and
"not spam" reports nothing; auto-replies and successful delivery reports are recognised and give
nothing; anything else goes to :mod:`producers.bounce_heuristics`. Every failure's reason comes from
:func:`schemas.bounce_reasons.classify`, the same rules as the sender's SMTP replies and the webhooks.
"""

from __future__ import annotations

import hashlib
import re

from producers.bounce_heuristics import heuristic_records, is_auto_reply, stage_near
from producers.bounce_records import BounceRecord, ParsedMail, RecordKind, Report
from producers.mail_reading import MailView, address_of, header_fields, read_mail
from schemas.attribution import (
    CAMPAIGN_HEADER,
    MESSAGE_HEADER,
    message_id_from_header,
    verp_mark,
    verp_marks,
)
from schemas.bounce_reasons import BounceClass, BounceReason, SmtpStage, Verdict, classify

# Feedback types (RFC 5965, 6591, 6650) that are a recipient's complaint; the rest are not about the recipient.
_COMPLAINT_FEEDBACK = {"abuse", "fraud", "other", ""}
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w-]+)", re.I)
_QUOTED_MESSAGE = re.compile(rf"^{MESSAGE_HEADER}:\s*([0-9a-f]{{32}})\s*$", re.I | re.M)
_QUOTED_CAMPAIGN = re.compile(rf"^{CAMPAIGN_HEADER}:\s*(\S+)\s*$", re.I | re.M)
_ORIGINAL_FIELDS = re.compile(
    rf"^({CAMPAIGN_HEADER}|{MESSAGE_HEADER}|Message-ID|To|Return-Path|List-Unsubscribe):[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
    re.I | re.M,
)
# The token of our one-click unsubscribe link (schemas.tokens: url-safe base64, unpadded).
_UNSUBSCRIBE_TOKEN = re.compile(r"/u/([A-Za-z0-9_-]{40,4096})")


def _original_headers(mail: MailView) -> dict[str, str] | None:
    """The fields attribution reads from the returned message's headers (names lowercased)."""
    for content_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
        text = mail.part_text(content_type)
        if text is not None:
            head = text.split("\n\n", 1)[0]
            fields: dict[str, str] = {}
            for name, value in _ORIGINAL_FIELDS.findall(head):
                fields.setdefault(name.lower(), " ".join(value.split()))
            return fields
    return None


def _attribute(parsed: ParsedMail, mail: MailView, envelope_to: list[str]) -> None:
    for address in [*envelope_to, *mail.headers("Delivered-To"), *mail.headers("X-Original-To"), mail.header("To")]:
        mark = verp_mark(str(address))
        if mark is not None:
            parsed.marks.append(mark)
    feedback = mail.part_text("message/feedback-report")
    if feedback is not None:
        # ARF (RFC 5965): Original-Mail-From is our envelope sender, the bounce address.
        parsed.marks += verp_marks(feedback)
    if parsed.marks:
        parsed.message_id = parsed.marks[0].message_id
    original = _original_headers(mail)
    if original is not None:
        parsed.campaign_id = original.get(CAMPAIGN_HEADER.lower(), "").strip() or None
        parsed.message_id = (
            parsed.message_id
            or (original.get(MESSAGE_HEADER.lower(), "").strip() or None)
            or (message_id_from_header(original.get("message-id", "")))
        )
        # The receiving server wrote our envelope sender as the Return-Path of what it returns or reports.
        returned = verp_mark(original.get("return-path", ""))
        if returned is not None:
            parsed.marks.append(returned)
        parsed.unsubscribe_tokens += _UNSUBSCRIBE_TOKEN.findall(original.get("list-unsubscribe", ""))
    if parsed.message_id is None or parsed.campaign_id is None or not (parsed.marks or parsed.unsubscribe_tokens):
        # Non-standard bounces quote the original message as text; our marker headers are in it.
        text = mail.text
        quoted = _QUOTED_MESSAGE.search(text)
        parsed.message_id = parsed.message_id or (quoted.group(1).lower() if quoted else None)
        campaign = _QUOTED_CAMPAIGN.search(text)
        parsed.campaign_id = parsed.campaign_id or (campaign.group(1) if campaign else None)
        if not parsed.marks:
            parsed.marks += verp_marks(text)
        if not parsed.unsubscribe_tokens:
            parsed.unsubscribe_tokens += _UNSUBSCRIBE_TOKEN.findall(text)[:4]


def _delivery_status(mail: MailView) -> tuple[list[BounceRecord], bool]:
    """The records of a DSN, and whether it reported successful deliveries only."""
    status_text = mail.part_text("message/delivery-status")
    if status_text is None:
        return [], False
    blocks = [block for block in _BLANK_LINE.split(status_text) if block.strip()]
    human = mail.text
    records = []
    succeeded = 0
    for text in blocks[1:]:  # the first block is per-message
        block = header_fields(text)
        recipient = address_of(block.get("final-recipient")) or address_of(block.get("original-recipient"))
        action = block.get("action", "").strip().lower()
        status = block.get("status", "").strip()
        if action in ("delivered", "relayed", "expanded") or status.startswith("2"):
            succeeded += 1
            continue
        raw_diagnostic = " ".join(block.get("diagnostic-code", "").split())
        # "smtp; 550 ..." / "X-Postfix; ..." / "X-Notes; ...": the type says nothing of the reason.
        diagnostic = raw_diagnostic.split(";", 1)[1].strip() if ";" in raw_diagnostic[:20] else raw_diagnostic
        delayed = action == "delayed"
        gave_up = not delayed and action == "failed"
        verdict = classify(diagnostic, status, gave_up=gave_up)
        if verdict.bounce_class is not BounceClass.BLOCK and stage_near(human, recipient) is SmtpStage.MAIL:
            # The report says the relay refused our MAIL FROM: whatever the words, not the recipient's doing.
            verdict = classify(diagnostic, status, stage=SmtpStage.MAIL, gave_up=gave_up)
        kind = RecordKind.DELAY if delayed else RecordKind.BOUNCE
        records.append(BounceRecord(recipient, kind, verdict, raw_diagnostic))
    return records, bool(succeeded) and not records


def _feedback(mail: MailView) -> list[BounceRecord]:
    report = mail.part_text("message/feedback-report")
    if report is None:
        return []
    fields = header_fields(report)
    feedback_type = fields.get("feedback-type", "abuse").strip().lower()
    recipient = address_of(fields.get("original-rcpt-to"))
    if recipient is None:
        original = _original_headers(mail)
        recipient = address_of(original.get("to", "")) if original is not None else None
    if feedback_type in _COMPLAINT_FEEDBACK:
        return [BounceRecord(recipient, RecordKind.COMPLAINT, feedback_type=feedback_type or "abuse")]
    if feedback_type == "virus":
        # The reporter found a virus in our mail: a sender-side problem, recorded, suppressing nobody.
        verdict = Verdict(BounceReason.VIRUS, "", "arf:virus")
        return [BounceRecord(recipient, RecordKind.BOUNCE, verdict, "arf; feedback-type virus", feedback_type)]
    return []  # auth-failure (a DMARC failure report), not-spam: nothing about the recipient


def parse_mail(raw: bytes, envelope_to: list[str] | None = None) -> ParsedMail:
    """Parse one returned message. Never raises on bad input: unknown mail yields report="none"."""
    mail = read_mail(raw)
    content_type = mail.header("Content-Type").lower()
    is_report = content_type.startswith("multipart/report")
    report_type = _REPORT_TYPE.search(content_type)
    kind = report_type.group(1) if report_type else ""
    if is_report and kind == "feedback-report":
        parsed = ParsedMail(Report.ARF, _feedback(mail))
    elif is_report and kind == "delivery-status":
        records, delivered = _delivery_status(mail)
        parsed = ParsedMail(Report.DELIVERED if delivered else Report.DSN, records)
    elif is_report:
        parsed = ParsedMail(Report.NONE)  # a report of another type (disposition-notification, ...)
    elif is_auto_reply(mail):
        parsed = ParsedMail(Report.AUTO_REPLY)
    else:
        parsed = ParsedMail(Report.HEURISTIC, heuristic_records(mail))
        if not parsed.records:
            parsed.report = Report.NONE
    _attribute(parsed, mail, envelope_to or [])
    message_id = mail.header("Message-ID").strip()
    parsed.report_id = message_id or hashlib.sha256(raw).hexdigest()
    return parsed
