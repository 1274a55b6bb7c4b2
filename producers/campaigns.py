"""Campaign intake (pure): audience parsing, validation and one send request per recipient.

The message id is derived from (campaign, recipient), so enqueueing the same
campaign twice yields the same ids and the sender's sent-log mails each address once.
"""

from __future__ import annotations

import csv
import html
import io
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

from schemas.campaigns import id_problem
from schemas.events import SendRequest, TrackingMode, message_id_for, utcnow
from schemas.json_input import NotJson, parse_json
from schemas.keys import normalize_address


class CampaignError(ValueError):
    """The campaign itself is unusable (not one bad row)."""


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    list_id: str
    from_address: str
    subject: str
    html: str
    text: str
    tracking: TrackingMode = TrackingMode.FULL

    def __post_init__(self) -> None:
        for name in ("campaign_id", "list_id"):
            problem = id_problem(getattr(self, name))
            if problem:
                raise CampaignError(f"{name} {problem}")
        for name in ("from_address", "subject"):
            if has_header_injection(getattr(self, name)):
                raise CampaignError(f"{name} contains a line break (header injection refused)")
        if not self.subject.strip():
            raise CampaignError("subject is empty")
        if not self.html.strip() and not self.text.strip():
            raise CampaignError("both the HTML and the text body are empty")


@dataclass
class Intake:
    requests: list[SendRequest] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0


def has_header_injection(value: str) -> bool:
    return any(ch in value for ch in "\r\n\x00")


def check_address(address: str) -> str:
    """The normalized address, or EmailNotValidError with a reason."""
    if has_header_injection(address):
        raise EmailNotValidError("address contains a line break")
    result = validate_email(address.strip(), check_deliverability=False)
    return normalize_address(result.normalized)


def _render(template: str, variables: dict[str, str], escape: bool) -> str:
    values = {k: html.escape(v) if escape else v for k, v in variables.items()}
    return string.Template(template).safe_substitute(values)


def build_requests(campaign: Campaign, audience: Iterable[dict[str, str]]) -> Intake:
    """One send request per valid, distinct recipient; bad rows are reported with their row number."""
    intake = Intake()
    seen: set[str] = set()
    now = utcnow()
    for row_number, row in enumerate(audience, start=1):
        raw = (row.get("email") or "").strip()
        try:
            recipient = check_address(raw)
        except EmailNotValidError as exc:
            intake.rejected.append((row_number, f"{raw or '(empty)'}: {exc}"))
            continue
        variables = {k: str(v) for k, v in row.items() if k and v is not None}
        subject = _render(campaign.subject, variables, escape=False)
        if has_header_injection(subject):
            intake.rejected.append((row_number, f"{recipient}: subject variables contain a line break"))
            continue
        if recipient in seen:
            intake.duplicates += 1
            continue
        seen.add(recipient)
        intake.requests.append(
            SendRequest(
                message_id=message_id_for(campaign.campaign_id, recipient),
                campaign_id=campaign.campaign_id,
                recipient=recipient,
                list_id=campaign.list_id,
                from_address=campaign.from_address,
                subject=subject,
                html=_render(campaign.html, variables, escape=True),
                text=_render(campaign.text, variables, escape=False),
                tracking=campaign.tracking,
                enqueued_at=now,
            )
        )
    return intake


def read_audience(text: str, fmt: str) -> Iterator[dict[str, str]]:
    """Rows of an audience file: ``csv`` with an ``email`` column, or ``jsonl`` objects."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "email" not in reader.fieldnames:
            raise CampaignError("the CSV audience needs a header row with an 'email' column")
        yield from reader
        return
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = parse_json(line)
            except NotJson as exc:
                raise CampaignError(f"line {number}: {exc}") from None
            if not isinstance(obj, dict):
                raise CampaignError(f"line {number}: expected a JSON object")
            yield {str(k): "" if v is None else str(v) for k, v in obj.items()}
        return
    raise CampaignError(f"unknown audience format {fmt!r} (csv or jsonl)")
