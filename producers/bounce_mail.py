"""Bounce and complaint mail -> bounce, delay and complaint records (pure).

RFC 3464 delivery-status reports are read per recipient (Action, Status, Diagnostic-Code); RFC 5965
ARF feedback reports become complaints (abuse, fraud, other), and DMARC failure reports and
"not spam" reports nothing; auto-replies and successful delivery reports are recognised and give
nothing; anything else is scanned by flufl.bounce for failed addresses, the diagnostic taken from
the text next to each address. Every failure's reason comes from
:func:`schemas.bounce_reasons.classify`, the same rules as the sender's SMTP replies and the webhooks.
"""

from __future__ import annotations

import email
import email.policy
import enum
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import fast_mail_parser
from flufl.bounce import all_failures

from schemas.attribution import (
    CAMPAIGN_HEADER,
    MESSAGE_HEADER,
    VerpMark,
    message_id_from_header,
    verp_mark,
    verp_marks,
)
from schemas.bounce_reasons import BounceClass, BounceReason, SmtpStage, Verdict, classify


class RecordKind(enum.StrEnum):
    BOUNCE = "bounce"
    DELAY = "delay"
    COMPLAINT = "complaint"


class Report(enum.StrEnum):
    DSN = "dsn"
    ARF = "arf"
    HEURISTIC = "heuristic"
    AUTO_REPLY = "auto_reply"
    DELIVERED = "delivered"
    NONE = "none"


@dataclass(frozen=True)
class BounceRecord:
    recipient: str | None
    kind: RecordKind
    verdict: Verdict | None = None  # None for complaints
    diagnostic: str = ""
    feedback_type: str = ""

    @property
    def reason(self) -> str:
        if self.kind is RecordKind.COMPLAINT:
            return "complaint"
        return str(self.verdict.reason) if self.verdict is not None else ""


@dataclass
class ParsedMail:
    report: Report
    records: list[BounceRecord] = field(default_factory=list)
    message_id: str | None = None
    campaign_id: str | None = None
    # What identifies this report, the same on every redelivery of it: its Message-ID, else its bytes.
    report_id: str = ""
    # What may prove the report is about a message we sent (checked in producers.bounce_intake): the
    # bounce addresses it was sent to or quotes, and the unsubscribe tokens of the returned message.
    marks: list[VerpMark] = field(default_factory=list)
    unsubscribe_tokens: list[str] = field(default_factory=list)

    @property
    def is_bounce(self) -> bool:
        return bool(self.records)

    @property
    def undetermined(self) -> bool:
        return any(r.verdict is not None and r.verdict.reason is BounceReason.UNDETERMINED for r in self.records)


# Feedback types (RFC 5965, 6591, 6650) that are a recipient's complaint; the rest are not about the recipient.
_COMPLAINT_FEEDBACK = {"abuse", "fraud", "other", ""}
# How reports name the command a refusal answered ("in reply to RCPT TO command", "after RCPT TO:").
_STAGE_WORDS = (
    (("in reply to mail", "after mail"), SmtpStage.MAIL),
    (("in reply to rcpt", "after rcpt"), SmtpStage.RCPT),
    (("in reply to end of data", "after end of data", "in reply to data", "after data"), SmtpStage.DATA),
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|abwesenheit|r[ée]ponse automatique"
    r"|absence|vacation|away from|on leave|please (verify|confirm) your (email|address)|challenge)",
    re.I,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|mail ?router|mdaemon|courier mail server", re.I)
# Where a non-standard bounce stops describing failures and copies the original message.
_COPY_MARKS = re.compile(
    r"^-+ ?(this is a copy|below this line|original message|the original message|attached message)", re.I | re.M
)


_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w-]+)", re.I)
_QUOTED_MESSAGE = re.compile(rf"^{MESSAGE_HEADER}:\s*([0-9a-f]{{32}})\s*$", re.I | re.M)
_QUOTED_CAMPAIGN = re.compile(rf"^{CAMPAIGN_HEADER}:\s*(\S+)\s*$", re.I | re.M)
# Exim's and others' delay warnings: "has not yet been delivered to one or more of its recipients".
_NOT_YET = re.compile(r"has not yet been delivered|not been delivered yet|delivery (is )?delayed", re.I)
_ADDRESS_LINE = re.compile(r"^\s+<?([\w.+'=-]+@[\w-]+(?:\.[\w-]+)+)>?:?\s*$", re.M)
# A session transcript (MDaemon, Kerio, hMailServer, ...): the recipient, then the server's refusal.
_TRANSCRIPT = re.compile(r"RCPT TO:\s*<([^<>\s]+@[^<>\s]+)>[^\n]*\n((?:\s*[<>]*\s*[45]\d\d[ -][^\n]*\n?)+)", re.I)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    # "rfc822; user@example.org" or "<user@example.org>"
    value = str(value).split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else None


def _fields(block: str) -> dict[str, str]:
    """Header fields of one header block (names lowercased, continuation lines unfolded, first one wins)."""
    fields: dict[str, str] = {}
    name: str | None = None
    for line in block.splitlines():
        if not line.strip():
            break
        if line[:1] in " \t":
            if name is not None:
                fields[name] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            name = None
            continue
        name = key.strip().lower()
        if name in fields:
            name = None  # a repeated field: the first one stands
            continue
        fields[name] = value.strip()
    return fields


class _View:
    """What the readers need of a mail: its headers, the text of a part by type, its human-readable
    text, and (only for non-standard bounces, which flufl.bounce reads) the stdlib message."""

    def headers(self, name: str) -> list[str]:
        raise NotImplementedError

    def part_text(self, content_type: str) -> str | None:
        raise NotImplementedError

    @property
    def text(self) -> str:
        raise NotImplementedError

    def header(self, name: str) -> str:
        values = self.headers(name)
        return values[0] if values else ""

    def message(self) -> Message:
        raise NotImplementedError


class _Mail(_View):
    """A mail parsed by the stdlib, its parts listed once and its text decoded once."""

    __slots__ = ("_text", "msg", "parts")

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.parts = [(part.get_content_type(), part) for part in msg.walk()]
        self._text: str | None = None

    def headers(self, name: str) -> list[str]:
        return [str(v) for v in self.msg.get_all(name) or []]

    def message(self) -> Message:
        return self.msg

    def part_text(self, content_type: str) -> str | None:
        part = next((part for kind, part in self.parts if kind == content_type), None)
        if part is None:
            return None
        payload = part.get_payload()
        if isinstance(payload, list):  # message/*: the parser made messages of the blocks
            return "\n".join(block.as_string() for block in payload if isinstance(block, Message))
        decoded = part.get_payload(decode=True)
        return decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else str(payload)

    @property
    def text(self) -> str:
        if self._text is None:
            chunks: list[str] = []
            for kind, part in self.parts:
                if kind in ("text/plain", "text/html") and not part.is_multipart():
                    if kind == "text/html" and chunks:
                        continue  # the plain alternative says the same
                    payload = part.get_payload(decode=True)
                    if isinstance(payload, bytes):
                        chunks.append(payload.decode(part.get_content_charset() or "latin-1", "replace"))
            self._text = "\n".join(chunks)
        return self._text


class _FastMail(_View):
    """A mail read by fast-mail-parser (Rust): the stdlib parser cost most of a bounce's time. The stdlib
    message is made only for flufl.bounce, when a non-standard bounce needs its detectors."""

    __slots__ = ("_headers", "_message", "_parts", "_raw", "_text")

    def __init__(self, parsed: Any, raw: bytes) -> None:
        self._raw = raw
        self._message: Message | None = None
        self._headers: dict[str, list[str]] = {name.lower(): values for name, values in parsed.headers.items()}
        self._parts = [(a.mimetype.lower(), a.content) for a in parsed.attachments]
        self._text = "\n".join(parsed.text_plain)

    def headers(self, name: str) -> list[str]:
        return self._headers.get(name.lower(), [])

    def part_text(self, content_type: str) -> str | None:
        content = next((content for kind, content in self._parts if kind == content_type), None)
        return None if content is None else bytes(content).decode("utf-8", "replace")

    @property
    def text(self) -> str:
        return self._text

    def message(self) -> Message:
        if self._message is None:
            self._message = email.message_from_bytes(self._raw, policy=email.policy.compat32)
        return self._message


def _read(raw: bytes) -> _View:
    """The fast parser, or the stdlib one for what it cannot read (it reads what it can of anything)."""
    try:
        parsed = fast_mail_parser.parse_email(raw)
    except Exception:  # ParseError or worse
        parsed = None
    if parsed is not None and parsed.headers:
        return _FastMail(parsed, raw)
    return _Mail(email.message_from_bytes(raw, policy=email.policy.compat32))


_ORIGINAL_FIELDS = re.compile(
    rf"^({CAMPAIGN_HEADER}|{MESSAGE_HEADER}|Message-ID|To|Return-Path|List-Unsubscribe):[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
    re.I | re.M,
)
# The token of our one-click unsubscribe link (schemas.tokens: url-safe base64, unpadded).
_UNSUBSCRIBE_TOKEN = re.compile(r"/u/([A-Za-z0-9_-]{40,4096})")


def _original_headers(mail: _View) -> dict[str, str] | None:
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


def _attribute(parsed: ParsedMail, mail: _View, envelope_to: list[str]) -> None:
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


def _stage_near(text: str, recipient: str | None) -> SmtpStage:
    """The SMTP command a report's human-readable part says the refusal answered, near the recipient."""
    if not text:
        return SmtpStage.UNKNOWN
    lowered = text.lower()
    at = lowered.find(recipient) if recipient else -1
    near = " ".join((lowered[at : at + 800] if at >= 0 else lowered[:2000]).split())
    for words, stage in _STAGE_WORDS:
        if any(word in near for word in words):
            return stage
    return SmtpStage.UNKNOWN


def _delivery_status(mail: _View) -> tuple[list[BounceRecord], bool]:
    """The records of a DSN, and whether it reported successful deliveries only."""
    status_text = mail.part_text("message/delivery-status")
    if status_text is None:
        return [], False
    blocks = [block for block in _BLANK_LINE.split(status_text) if block.strip()]
    human = mail.text
    records = []
    succeeded = 0
    for text in blocks[1:]:  # the first block is per-message
        block = _fields(text)
        recipient = _address(block.get("final-recipient")) or _address(block.get("original-recipient"))
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
        if verdict.bounce_class is not BounceClass.BLOCK and _stage_near(human, recipient) is SmtpStage.MAIL:
            # The report says the relay refused our MAIL FROM: whatever the words, not the recipient's doing.
            verdict = classify(diagnostic, status, stage=SmtpStage.MAIL, gave_up=gave_up)
        kind = RecordKind.DELAY if delayed else RecordKind.BOUNCE
        records.append(BounceRecord(recipient, kind, verdict, raw_diagnostic))
    return records, bool(succeeded) and not records


def _feedback(mail: _View) -> list[BounceRecord]:
    report = mail.part_text("message/feedback-report")
    if report is None:
        return []
    fields = _fields(report)
    feedback_type = fields.get("feedback-type", "abuse").strip().lower()
    recipient = _address(fields.get("original-rcpt-to"))
    if recipient is None:
        original = _original_headers(mail)
        recipient = _address(original.get("to", "")) if original is not None else None
    if feedback_type in _COMPLAINT_FEEDBACK:
        return [BounceRecord(recipient, RecordKind.COMPLAINT, feedback_type=feedback_type or "abuse")]
    if feedback_type == "virus":
        # The reporter found a virus in our mail: a sender-side problem, recorded, suppressing nobody.
        verdict = Verdict(BounceReason.VIRUS, "", "arf:virus")
        return [BounceRecord(recipient, RecordKind.BOUNCE, verdict, "arf; feedback-type virus", feedback_type)]
    return []  # auth-failure (a DMARC failure report), not-spam: nothing about the recipient


def is_auto_reply(mail: _View) -> bool:
    """A vacation or out-of-office answer, or a challenge to prove we are human: no delivery failure."""
    sender = mail.header("From")
    if _DAEMON.search(sender) or not sender.strip():
        return False
    auto = mail.header("Auto-Submitted").lower()
    marked = (
        auto.startswith("auto-replied")
        or (auto.startswith("auto-generated") and bool(mail.headers("X-Auto-Response-Suppress")))
        or any(mail.headers(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Boxbe-Status"))
        or mail.header("Precedence").lower() == "auto_reply"
    )
    return marked or bool(_AUTO_SUBJECT.search(mail.header("Subject")))


def _before_copy(text: str) -> str:
    """A non-standard bounce's own words, without the copy of the original message it may append."""
    copy = _COPY_MARKS.search(text)
    return text[: copy.start()] if copy else text


def _failure_window(text: str, address: str) -> str:
    """The lines of a bounce's own words (``_before_copy``) about one address: from it to the next blank line."""
    at = text.lower().find(address)
    if at < 0:
        return text[:1000]
    rest = text[at:]
    blank = re.search(r"\n\s*\n(?!\s+\S)", rest)
    window = rest[: blank.start()] if blank else rest
    return window[:1500]


def _delay_warning(text: str) -> list[BounceRecord]:
    """A warning that delivery is still being tried: one delay record per address it lists."""
    head = _before_copy(text)
    found = _NOT_YET.search(head)
    if found is None:
        return []
    records = []
    for match in _ADDRESS_LINE.finditer(head, found.end()):
        address = match.group(1).lower()
        window = _failure_window(head, address)
        verdict = classify(_after_address_line(window))
        records.append(BounceRecord(address, RecordKind.DELAY, verdict, " ".join(window.split())[:1000]))
    return records


def _transcript(text: str) -> list[BounceRecord]:
    records = []
    for match in _TRANSCRIPT.finditer(text):
        reply = "\n".join(line.strip().lstrip("<> ") for line in match.group(2).strip().splitlines())
        if reply.startswith("2"):
            continue
        verdict = classify(reply, stage=SmtpStage.RCPT, gave_up=True)
        records.append(BounceRecord(match.group(1).lower(), RecordKind.BOUNCE, verdict, " ".join(reply.split())[:1000]))
    return records


def _heuristic(mail: _View) -> list[BounceRecord]:
    text, sender = mail.text, mail.header("From")
    if _DAEMON.search(sender) and (warning := _delay_warning(text)):
        return warning
    # Exim (and the MTAs that copy it: GMX, cPanel hosts) names the failed addresses in a header of its
    # own: no need to run flufl.bounce's two dozen detectors over the message to find them.
    named = {a.strip().strip("<>").lower().encode() for v in mail.headers("X-Failed-Recipients") for a in v.split(",")}
    named.discard(b"")
    if named:
        temporary, permanent = frozenset[bytes](), frozenset(named)
    else:
        try:
            temporary, permanent = all_failures(mail.message())
        except Exception:  # some flufl.bounce detectors raise on odd mail; that mail is simply no bounce
            temporary, permanent = frozenset(), frozenset()
    if not temporary and not permanent:
        return _transcript(text) if _DAEMON.search(sender) else []
    records = []
    failures = [(a, RecordKind.DELAY) for a in temporary if a not in permanent]
    failures += [(a, RecordKind.BOUNCE) for a in permanent]
    own_words = _before_copy(text)
    for raw, kind in failures:
        address = raw.decode("utf-8", "replace").lower()
        window = _failure_window(own_words, address)
        answer = _after_address_line(window)
        verdict = classify(answer, stage=_stage_near(window, None), gave_up=kind is RecordKind.BOUNCE)
        diagnostic = window if answer is window else " ".join(answer.split())
        records.append(BounceRecord(address, kind, verdict, diagnostic[:1000]))
    return records


def _after_address_line(window: str) -> str:
    """The address line itself names nobody's reason; what follows is the remote answer or the MTA's verdict."""
    _, newline, rest = window.partition("\n")
    return rest if newline else window


def parse_mail(raw: bytes, envelope_to: list[str] | None = None) -> ParsedMail:
    """Parse one returned message. Never raises on bad input: unknown mail yields report="none"."""
    mail = _read(raw)
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
        parsed = ParsedMail(Report.HEURISTIC, _heuristic(mail))
        if not parsed.records:
            parsed.report = Report.NONE
    _attribute(parsed, mail, envelope_to or [])
    message_id = mail.header("Message-ID").strip()
    parsed.report_id = message_id or hashlib.sha256(raw).hexdigest()
    return parsed
