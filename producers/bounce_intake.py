"""Bounce-mail intake: the SMTP receiver (aiosmtpd) and `mailpulse ingest-mail` share :func:`ingest`.

A parsed bounce is published and acknowledged by Kafka before the mail is
accepted (250); when Kafka cannot acknowledge, the SMTP answer is 451 so the
sending server retries. Mail that is no bounce, or cannot be parsed, is counted
and kept in a Maildir for inspection (within an hourly and an on-disk cap); it
never stops the receiver.

Nothing in a report is trusted because it says so. Each bounce or complaint is
*attributed* only when the report proves it is about a message we sent to that
recipient: a bounce address it was sent to or quotes whose mac verifies for the
recipient (:class:`schemas.attribution.BounceAddresses`), or an authentic
unsubscribe token of the returned message naming the recipient. Unattributed
reports are recorded (``attributed = false``, counted) and suppress nobody
unless ``MAILPULSE_TRUST_UNATTRIBUTED_BOUNCES`` is set. The receiver takes mail
only for the bounce domain (550 otherwise) and up to ``MAILPULSE_BOUNCE_MAX_BYTES``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mailbox
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from producers.bounce_mail import parse_mail
from producers.bounce_records import BounceRecord, ParsedMail, RecordKind, Report
from producers.mailto_unsubscribe import MailtoUnsubscribes
from producers.metrics import EdgeMetrics
from producers.publisher import Publisher, PublishError
from schemas.attribution import UNATTRIBUTED, BounceAddresses
from schemas.bounce_reasons import BounceReason
from schemas.codec import encode
from schemas.events import AnyEvent, Bounce, Complaint, Deferred, bounce_of, utcnow
from schemas.keys import normalize_address, recipient_key
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenCodec, TokenError
from schemas.topics import Topics

log = logging.getLogger(__name__)
# flufl.bounce logs every detector that trips over odd mail at ERROR; that mail is counted here instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def report_event_id(parsed: ParsedMail, record: BounceRecord) -> str:
    """The same report redelivered (an MTA retrying after a 451) is the same event, so it counts once."""
    key = f"mailpulse-report\x00{parsed.report_id}\x00{record.recipient or ''}\x00{record.kind}\x00{record.reason}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Tie:
    """What ties one report record to a message we sent: whether it does, and what the proof names."""

    attributed: bool
    message_id: str | None = None
    campaign_id: str | None = None


class Attribution:
    """Checks a report's proofs with the operator's secrets (see the module docstring)."""

    def __init__(self, secrets: tuple[str, ...] | list[str]) -> None:
        self.addresses = BounceAddresses(secrets)
        # No maximum age here: a complaint may come months after the message.
        self.tokens = TokenCodec(secrets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Attribution:
        return cls(settings.secret_keys)

    def tie(self, parsed: ParsedMail, recipient: str | None) -> Tie:
        if not recipient:
            return Tie(False)
        for mark in parsed.marks:
            if self.addresses.verifies(mark, recipient):
                return Tie(True, mark.message_id)
        for token in parsed.unsubscribe_tokens:
            try:
                claims = self.tokens.read(token, LinkKind.UNSUBSCRIBE)
            except TokenError:
                continue
            if claims.recipient and normalize_address(claims.recipient) == normalize_address(recipient):
                return Tie(True, claims.message_id, claims.campaign_id)
        return Tie(False)


def events_from_mail(parsed: ParsedMail, now: datetime, attribution: Attribution) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for record in parsed.records:
        tie = attribution.tie(parsed, record.recipient)
        common: dict[str, Any] = {
            "event_id": report_event_id(parsed, record),
            "occurred_at": now,
            # An authentic token names the campaign; otherwise the report's own (unproven) marker header.
            "campaign_id": tie.campaign_id or parsed.campaign_id or UNATTRIBUTED,
            "message_id": tie.message_id or parsed.message_id or "unknown",
            "recipient": record.recipient,
        }
        verdict = record.verdict
        match record.kind:
            case RecordKind.COMPLAINT:
                events.append(
                    Complaint(
                        **common,
                        feedback_type=record.feedback_type or "abuse",
                        source="arf",
                        attributed=tie.attributed,
                    )
                )
            case RecordKind.DELAY:
                reason = verdict.reason if verdict is not None else BounceReason.UNDETERMINED
                events.append(Deferred(**common, smtp_reply=record.diagnostic[:500], reason=reason))
            case RecordKind.BOUNCE:
                assert verdict is not None  # a bounce record always has its verdict
                events.append(
                    bounce_of(verdict, record.diagnostic, f"mail-{parsed.report}", attributed=tie.attributed, **common)
                )
            case _:
                assert_never(record.kind)
    return events


@dataclass(frozen=True)
class IngestResult:
    report: str
    published: int
    kept: Path | None = None
    unattributed: int = 0


class Keeper:
    """Maildir for mail that is no bounce, could not be parsed, or whose reason is undetermined.

    Anyone can send the receiver mail, so what is kept is capped: at most ``per_hour`` mails in any
    hour and ``max_bytes`` on disk; past either, mail is counted (``not_kept``) and dropped.
    """

    def __init__(self, folder: Path, per_hour: int = 100, max_bytes: int = 100 << 20) -> None:
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.box = mailbox.Maildir(str(folder), create=True)
        self.per_hour, self.max_bytes = per_hour, max_bytes
        self.kept = 0
        self.not_kept = 0
        self._recent: deque[float] = deque()
        self._bytes = self._on_disk()

    def _on_disk(self) -> int:
        return sum(f.stat().st_size for sub in ("new", "cur") for f in (self.folder / sub).iterdir() if f.is_file())

    def keep(self, raw: bytes, now: float | None = None) -> Path | None:
        """The kept file, or None when a cap is reached."""
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0] <= now - 3600:
            self._recent.popleft()
        if self._bytes + len(raw) > self.max_bytes:
            self._bytes = self._on_disk()  # an operator may have cleared some since
        if len(self._recent) >= self.per_hour or self._bytes + len(raw) > self.max_bytes:
            self.not_kept += 1
            log.warning("bounce mail not kept: the receiver's cap on kept mail is reached")
            return None
        key = self.box.add(raw)
        self._recent.append(now)
        self._bytes += len(raw)
        self.kept += 1
        return self.folder / "new" / key

    @classmethod
    def from_settings(cls, settings: Settings) -> Keeper:
        return cls(
            settings.var_dir / "bounces" / "unparsed", settings.bounce_keep_per_hour, settings.bounce_keep_max_mb << 20
        )


async def ingest(
    raw: bytes,
    envelope_to: list[str],
    publisher: Publisher,
    topics: Topics,
    keeper: Keeper,
    timeout: float,
    attribution: Attribution,
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
    events = events_from_mail(parsed, utcnow(), attribution)
    await asyncio.gather(
        *(
            publisher.publish_confirmed(topics.events, recipient_key(e.recipient, e.campaign_id), encode(e), timeout)
            for e in events
        )
    )
    unattributed = sum(isinstance(e, Bounce | Complaint) and not e.attributed for e in events)
    if unattributed:
        log.warning(
            "%d %s report records name no message we sent to their recipient (message %s): recorded, not suppressing",
            unattributed,
            parsed.report,
            parsed.message_id or "unknown",
        )
    # An undetermined reason counts as soft; the mail is kept so that a person can write the missing rule.
    kept = keeper.keep(raw) if parsed.undetermined else None
    return IngestResult(parsed.report, len(events), kept, unattributed)


class BounceMailHandler:
    def __init__(
        self,
        publisher: Publisher,
        topics: Topics,
        keeper: Keeper,
        timeout: float,
        attribution: Attribution,
        bounce_domain: str,
        metrics: EdgeMetrics | None = None,
        unsubscribes: MailtoUnsubscribes | None = None,
    ) -> None:
        self.publisher = publisher
        self.topics = topics
        self.keeper = keeper
        self.timeout = timeout
        self.attribution = attribution
        self.bounce_domain = bounce_domain.lower()
        self.metrics = metrics or EdgeMetrics.create()
        self.unsubscribes = unsubscribes
        self.counts = {"bounces": 0, "kept": 0, "deferred_to_sender": 0, "unattributed": 0, "refused_rcpt": 0}

    def _count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] = self.counts.get(outcome, 0) + n
            self.metrics.bounce_mail.labels(outcome).inc(n)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.unsubscribes is not None and self.unsubscribes.serves(address):
            if not self.unsubscribes.authentic(address):
                self._count("refused_unsubscribe")
                return "550 5.1.1 No such mailbox here"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        # Only the bounce domain's addresses: this is no relay and no mailbox for anything else.
        if address.rpartition("@")[2].lower().rstrip(".") != self.bounce_domain:
            self._count("refused_rcpt")
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if self.unsubscribes is not None:
            unsubscribes = [rcpt for rcpt in envelope.rcpt_tos if self.unsubscribes.serves(rcpt)]
            if unsubscribes:
                answer = await self.unsubscribes.unsubscribe(unsubscribes, raw)
                self._count("unsubscribed" if answer.startswith("250") else "deferred_to_sender", len(unsubscribes))
                if not answer.startswith("250") or len(unsubscribes) == len(envelope.rcpt_tos):
                    return answer
        kept_before = self.keeper.not_kept
        try:
            result = await ingest(
                raw, list(envelope.rcpt_tos), self.publisher, self.topics, self.keeper, self.timeout, self.attribution
            )
        except PublishError as exc:
            self._count("deferred_to_sender")
            log.warning("bounce not acknowledged by Kafka, asking the sender to retry: %s", exc)
            return "451 4.3.0 Temporarily unable to record this report, try again later"
        if result.kept is not None:
            self._count("kept")
        self._count("not_kept", self.keeper.not_kept - kept_before)
        self._count("bounces", result.published)
        self._count("unattributed", result.unattributed)
        return "250 2.0.0 Report recorded"


def start_receiver(handler: BounceMailHandler, host: str, port: int, max_bytes: int = 10 * 1024 * 1024) -> Controller:
    # Larger mail gets 552 from aiosmtpd before it is read to the end.
    controller = Controller(handler, hostname=host, port=port, data_size_limit=max_bytes)
    controller.start()
    return controller
