"""What every provider normalizer shares: deterministic event ids and attribution from metadata."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.attribution import UNATTRIBUTED, message_id_from_header
from schemas.bounce_reasons import BounceClass, BounceReason, Verdict, classify
from schemas.keys import normalize_address

CAMPAIGN_KEY = "mailpulse_campaign"
MESSAGE_KEY = "mailpulse_message"
LIST_KEY = "mailpulse_list"
_NAMESPACE = uuid.UUID("0b7e2c1e-4d0a-4e8e-9f1c-4b1f5cb0a9d3")


class WebhookError(ValueError):
    """The payload is not what the provider sends; answered with 400."""


class SignatureError(ValueError):
    """Missing or bad signature, or a replay; answered with 401/403, nothing published."""


class VerificationUnavailable(RuntimeError):
    """What the check needs cannot be had now (the signing certificate did not download); answered 503, so
    the provider delivers again later."""


def event_id(provider: str, provider_event_id: str, recipient: str | None, kind: str) -> str:
    # The same provider event delivered twice maps to the same event id: idempotent downstream.
    return uuid.uuid5(_NAMESPACE, f"{provider}\x00{provider_event_id}\x00{recipient or ''}\x00{kind}").hex


def attribution(metadata: Mapping[str, Any], message_id_header: str = "") -> dict[str, Any]:
    campaign = str(metadata.get(CAMPAIGN_KEY) or "") or UNATTRIBUTED
    message = str(metadata.get(MESSAGE_KEY) or "") or message_id_from_header(message_id_header) or ""
    return {"campaign_id": campaign, "message_id": message or "unknown", "list_id": str(metadata.get(LIST_KEY) or "")}


def provider_verdict(
    text: str,
    status: str = "",
    code: int = 0,
    default: BounceReason = BounceReason.UNDETERMINED,
    within: BounceClass | None = None,
) -> Verdict:
    """The reason of a provider's bounce: its diagnostic text decides when a rule reads it (the same rules
    as mail and SMTP), else the provider's own classification (``default``). ``within``: the class the
    provider's classification fixes (a "blocked" bounce stays a block whatever the text adds)."""
    found = classify(text, status, code) if text or status or code else None
    # No rule and no code that says more is an undetermined verdict: the provider's word then stands.
    readable = found is not None and found.reason is not BounceReason.UNDETERMINED
    if found is not None and readable and (within is None or found.reason.bounce_class is within):
        return found
    return Verdict(default, found.status if found is not None else "", f"provider:{default}")


def recipient(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return normalize_address(value.strip().strip("<>"))


def from_unix(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def from_iso(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
