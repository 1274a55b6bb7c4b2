"""How a returned message is tied back to what we sent (shared by the sender, which
writes these markers, and the bounce intake, which reads them)."""

from __future__ import annotations

import re

CAMPAIGN_HEADER = "X-Mailpulse-Campaign"
MESSAGE_HEADER = "X-Mailpulse-Message"
# Events no campaign can be found for are still recorded, under this campaign id.
UNATTRIBUTED = "unattributed"

_VERP = re.compile(r"\bbounces\+([0-9a-f]{32})@", re.IGNORECASE)
_OUR_MESSAGE_ID = re.compile(r"<([0-9a-f]{32})\.\d+@")


def verp_address(message_id: str, bounce_domain: str) -> str:
    """Envelope sender naming the message; the message id is an opaque uuid (no address)
    and keeps the local part within the 64-octet limit."""
    return f"bounces+{message_id}@{bounce_domain}"


def message_id_from_verp(address: str) -> str | None:
    match = _VERP.search(address)
    return match.group(1).lower() if match else None


def message_id_from_header(message_id_header: str) -> str | None:
    match = _OUR_MESSAGE_ID.search(message_id_header)
    return match.group(1) if match else None
