"""How a returned message is tied back to what we sent (shared by the sender, which
writes these markers, and the bounce intake, which reads them).

The envelope sender of every message is ``bounces+<message id>.<mac>@<bounce domain>``: the mac
is an HMAC-SHA256 (truncated to 80 bits) of the message id and its recipient, under a key derived
for this purpose from the operator's secrets. A report that reaches that address, or quotes it as
the returned message's Return-Path, is tied to that message *and that recipient*: someone who
knows one of our bounce addresses (every recipient sees their own) can bounce only themselves.
The marker headers (``X-Mailpulse-*``) are plain text anyone can write; they name the campaign
but prove nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.key_derivation import Purpose, derive_key
from schemas.keys import normalize_address

CAMPAIGN_HEADER = "X-Mailpulse-Campaign"
MESSAGE_HEADER = "X-Mailpulse-Message"
# Events no campaign can be found for are still recorded, under this campaign id.
UNATTRIBUTED = "unattributed"

_VERP = re.compile(r"\bbounces\+([0-9a-f]{32})(?:\.([0-9a-f]{20}))?@", re.IGNORECASE)
_MAC_HEX = 20
_OUR_MESSAGE_ID = re.compile(r"<([0-9a-f]{32})\.\d+@")


@dataclass(frozen=True)
class VerpMark:
    """What a bounce address names: the message, and the mac (None when the address carries none)."""

    message_id: str
    mac: str | None


class BounceAddresses:
    """Mints and checks the authenticated bounce addresses (the first secret mints, all verify)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret key is required")
        self._keys = [derive_key(secret, Purpose.BOUNCE_ADDRESS) for secret in secrets]

    @staticmethod
    def _mac(key: bytes, message_id: str, recipient: str) -> str:
        signed = f"{message_id.lower()}\n{normalize_address(recipient)}".encode()
        return hmac.new(key, signed, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def address(self, message_id: str, recipient: str, bounce_domain: str) -> str:
        """Envelope sender naming the message (an opaque uuid, no address) within the 64-octet local part."""
        return f"bounces+{message_id}.{self._mac(self._keys[0], message_id, recipient)}@{bounce_domain}"

    def verifies(self, mark: VerpMark, recipient: str | None) -> bool:
        """Whether ``mark`` was minted by us for this message and ``recipient``."""
        if mark.mac is None or not recipient:
            return False
        matched = False
        for key in self._keys:  # every key compared: timing says nothing about which matched
            matched |= hmac.compare_digest(self._mac(key, mark.message_id, recipient), mark.mac.lower())
        return matched


def verp_mark(address: str) -> VerpMark | None:
    match = _VERP.search(address)
    if match is None:
        return None
    return VerpMark(match.group(1).lower(), match.group(2).lower() if match.group(2) else None)


def verp_marks(text: str, limit: int = 4) -> list[VerpMark]:
    """Every bounce address in ``text`` (a quoted message, a feedback report), the first ``limit`` of them."""
    return [
        VerpMark(m.group(1).lower(), m.group(2).lower() if m.group(2) else None)
        for m in itertools.islice(_VERP.finditer(text), limit)
    ]


def message_id_from_verp(address: str) -> str | None:
    mark = verp_mark(address)
    return mark.message_id if mark else None


def message_id_from_header(message_id_header: str) -> str | None:
    match = _OUR_MESSAGE_ID.search(message_id_header)
    return match.group(1) if match else None
