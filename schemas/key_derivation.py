"""One key per purpose from the operator's secrets (HKDF-SHA256, RFC 5869).

``MAILPULSE_SECRET_KEYS`` are free-form strings. Each purpose (link tokens, the workers'
forwarded lookups, ...) gets its own key derived from them, so a key that leaks from one use,
or a weakness in one construction, says nothing about the others.
"""

from __future__ import annotations

import enum
import functools

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class Purpose(enum.StrEnum):
    LINK_TOKENS = "mailpulse/link-tokens/v1"
    WORKER_FORWARDING = "mailpulse/worker-forwarding/v1"
    BOUNCE_ADDRESS = "mailpulse/bounce-address/v1"
    MAILTO_UNSUBSCRIBE = "mailpulse/mailto-unsubscribe/v1"
    OPERATOR_SESSION = "mailpulse/operator-session/v1"
    OPERATOR_LINK = "mailpulse/operator-link/v1"


@functools.lru_cache(maxsize=64)
def derive_key(secret: str, purpose: Purpose, length: int = 32) -> bytes:
    """``length`` bytes for ``purpose`` from ``secret``; the same inputs always give the same key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"mailpulse", info=purpose.value.encode())
    return hkdf.derive(secret.encode())
