"""What the bounce readers find in a mail (:func:`producers.bounce_mail.parse_mail`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from schemas.attribution import VerpMark
from schemas.bounce_reasons import BounceReason, Verdict


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
