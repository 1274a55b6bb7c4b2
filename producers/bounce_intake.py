"""Bounce-mail intake: the SMTP receiver (aiosmtpd) and `mailpulse ingest-mail` share :func:`ingest`.

A parsed bounce is published and acknowledged by Kafka before the mail is
accepted (250); when Kafka cannot acknowledge, the SMTP answer is 451 so the
sending server retries. Mail that is no bounce, or cannot be parsed, is counted
and kept in a Maildir for inspection; it never stops the receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mailbox
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from producers.bounce_mail import BounceRecord, ParsedMail, RecordKind, Report, parse_mail
from producers.publisher import Publisher, PublishError
from schemas.attribution import UNATTRIBUTED
from schemas.bounce_reasons import BounceReason
from schemas.codec import encode
from schemas.events import AnyEvent, Complaint, Deferred, bounce_of, utcnow
from schemas.keys import recipient_key
from schemas.topics import Topics

log = logging.getLogger(__name__)
# flufl.bounce logs every detector that trips over odd mail at ERROR; that mail is counted here instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def report_event_id(parsed: ParsedMail, record: BounceRecord) -> str:
    """The same report redelivered (an MTA retrying after a 451) is the same event, so it counts once."""
    key = f"mailpulse-report\x00{parsed.report_id}\x00{record.recipient or ''}\x00{record.kind}\x00{record.reason}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def events_from_mail(parsed: ParsedMail, now: datetime) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for record in parsed.records:
        common: dict[str, Any] = {
            "event_id": report_event_id(parsed, record),
            "occurred_at": now,
            "campaign_id": parsed.campaign_id or UNATTRIBUTED,
            "message_id": parsed.message_id or "unknown",
            "recipient": record.recipient,
        }
        verdict = record.verdict
        match record.kind:
            case RecordKind.COMPLAINT:
                events.append(Complaint(**common, feedback_type=record.feedback_type or "abuse", source="arf"))
            case RecordKind.DELAY:
                reason = verdict.reason if verdict is not None else BounceReason.UNDETERMINED
                events.append(Deferred(**common, smtp_reply=record.diagnostic[:500], reason=reason))
            case RecordKind.BOUNCE:
                assert verdict is not None  # a bounce record always has its verdict
                events.append(bounce_of(verdict, record.diagnostic, f"mail-{parsed.report}", **common))
            case _:
                assert_never(record.kind)
    return events


@dataclass(frozen=True)
class IngestResult:
    report: str
    published: int
    kept: Path | None = None


class Keeper:
    """Maildir for mail that is no bounce, could not be parsed, or whose reason is undetermined."""

    def __init__(self, folder: Path) -> None:
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.box = mailbox.Maildir(str(folder), create=True)
        self.kept = 0

    def keep(self, raw: bytes) -> Path:
        key = self.box.add(raw)
        self.kept += 1
        return self.folder / "new" / key


async def ingest(
    raw: bytes, envelope_to: list[str], publisher: Publisher, topics: Topics, keeper: Keeper, timeout: float
) -> IngestResult:
    try:
        parsed = parse_mail(raw, envelope_to)
    except Exception:  # parse_mail is defensive; anything left is still kept, not lost
        log.exception("bounce mail could not be parsed")
        return IngestResult("error", 0, keeper.keep(raw))
    if not parsed.is_bounce:
        # Auto-replies and successful delivery reports are known for what they are: nothing to inspect.
        kept = None if parsed.report in (Report.AUTO_REPLY, Report.DELIVERED, Report.ARF) else keeper.keep(raw)
        return IngestResult(parsed.report, 0, kept)
    events = events_from_mail(parsed, utcnow())
    await asyncio.gather(
        *(
            publisher.publish_confirmed(topics.events, recipient_key(e.recipient, e.campaign_id), encode(e), timeout)
            for e in events
        )
    )
    # An undetermined reason counts as soft; the mail is kept so that a person can write the missing rule.
    return IngestResult(parsed.report, len(events), keeper.keep(raw) if parsed.undetermined else None)


class BounceMailHandler:
    def __init__(self, publisher: Publisher, topics: Topics, keeper: Keeper, timeout: float) -> None:
        self.publisher = publisher
        self.topics = topics
        self.keeper = keeper
        self.timeout = timeout
        self.counts = {"bounces": 0, "kept": 0, "deferred_to_sender": 0}

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = await ingest(raw, list(envelope.rcpt_tos), self.publisher, self.topics, self.keeper, self.timeout)
        except PublishError as exc:
            self.counts["deferred_to_sender"] += 1
            log.warning("bounce not acknowledged by Kafka, asking the sender to retry: %s", exc)
            return "451 4.3.0 Temporarily unable to record this report, try again later"
        if result.kept is not None:
            self.counts["kept"] += 1
        self.counts["bounces"] += result.published
        return "250 2.0.0 Report recorded"


def start_receiver(handler: BounceMailHandler, host: str, port: int) -> Controller:
    controller = Controller(handler, hostname=host, port=port, data_size_limit=10 * 1024 * 1024)
    controller.start()
    return controller
