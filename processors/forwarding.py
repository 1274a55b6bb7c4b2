"""How one worker asks another for an answer it does not hold, without handing over anyone's key.

A lookup goes to the worker whose partition holds the key, at the address faust's group
advertises for it. The caller's API key must not travel there: whoever joined the group with
a made-up address would collect it. The forwarded request instead carries a signature of its
own path and time, under a key derived from the shared secrets for this purpose alone
(:mod:`schemas.key_derivation`), valid for that path for :data:`MAX_AGE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from schemas.key_derivation import Purpose, derive_key

HEADER = "x-mailpulse-forwarded"
MAX_AGE_SECONDS = 30


def _mac(key: bytes, path: str, stamp: int) -> str:
    return hmac.new(key, f"{stamp}\n{path}".encode(), hashlib.sha256).hexdigest()


def forward_headers(secrets: Sequence[str], path: str, now: float) -> dict[str, str]:
    """The only headers a forwarded lookup carries: the signature of ``path`` at ``now``."""
    stamp = int(now)
    return {HEADER: f"{stamp}.{_mac(derive_key(secrets[0], Purpose.WORKER_FORWARDING), path, stamp)}"}


def is_forwarded(secrets: Sequence[str], value: str | None, path: str, now: float) -> bool:
    """Whether ``value`` signs ``path`` under one of the secrets' forwarding keys, recently."""
    if not value or "." not in value:
        return False
    stamp_text, mac = value.split(".", 1)
    if not stamp_text.isdigit() or abs(now - int(stamp_text)) > MAX_AGE_SECONDS:
        return False
    matched = False
    for secret in secrets:  # every key compared: timing says nothing about which matched
        expected = _mac(derive_key(secret, Purpose.WORKER_FORWARDING), path, int(stamp_text))
        matched |= hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))
    return matched
