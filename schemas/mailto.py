"""Per-message mailto: unsubscribe addresses: ``unsubscribe+<token>@<unsubscribe domain>``.

Mail clients that do not use RFC 8058's one-click POST send a mail to the `List-Unsubscribe` mailto: URI
instead; each message gets its own, so that mail proves which message (hence which recipient and list) it
unsubscribes, whoever sends it and from wherever. The token is the message id (16 bytes) and an
HMAC-SHA256 of it truncated to 80 bits, under a key derived for this purpose from the operator's secrets,
in lower-case base32: 42 characters, so the local part stays within RFC 5321's 64 octets, and case-folding
by a relay changes nothing. It names no address: the receiver looks the message's recipient up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from schemas.key_derivation import Purpose, derive_key

PREFIX = "unsubscribe+"
_ID_BYTES, _MAC_BYTES = 16, 10
TOKEN_LENGTH = 42  # base32 of 26 bytes, unpadded


class MailtoError(ValueError):
    """Not one of our unsubscribe addresses: malformed, or its mac does not verify."""


class MailtoAddresses:
    """Mints and reads the unsubscribe addresses (the first secret mints, all verify)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret key is required")
        self._keys = [derive_key(secret, Purpose.MAILTO_UNSUBSCRIBE) for secret in secrets]

    @staticmethod
    def _mac(key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def address(self, message_id: str, domain: str) -> str:
        """The address for message ``message_id`` (32 hex digits, as every message id the intake makes)."""
        message = bytes.fromhex(message_id)
        if len(message) != _ID_BYTES:
            raise ValueError(f"a message id of {_ID_BYTES} bytes is required, got {message_id!r}")
        token = base64.b32encode(message + self._mac(self._keys[0], message)).decode().rstrip("=").lower()
        return f"{PREFIX}{token}@{domain}"

    def message_id(self, address: str) -> str:
        """The message an address was minted for; MailtoError when it was not minted by us."""
        local = address.rpartition("@")[0].strip("<> ").lower()
        if not local.startswith(PREFIX) or len(local) != len(PREFIX) + TOKEN_LENGTH:
            raise MailtoError("not an unsubscribe address")
        token = local[len(PREFIX) :].upper()
        try:
            raw = base64.b32decode(token + "=" * (-len(token) % 8))
        except ValueError:
            raise MailtoError("malformed unsubscribe token") from None
        message, mac = raw[:_ID_BYTES], raw[_ID_BYTES:]
        matched = False
        for key in self._keys:  # every key compared: timing says nothing about which matched
            matched |= hmac.compare_digest(self._mac(key, message), mac)
        if not matched:
            raise MailtoError("unsubscribe token not authentic")
        return message.hex()


def is_unsubscribe_address(address: str) -> bool:
    return address.strip("<> ").lower().startswith(PREFIX)
