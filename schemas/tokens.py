"""Opaque, signed link tokens shared by the sender (which mints) and the edge (which reads).

Tokens are Fernet tokens (AES-128-CBC encrypted, HMAC-SHA256 authenticated,
URL-safe base64) from ``cryptography``: signing alone would leave the address
readable in base64, and no address may appear in a URL. ``MultiFernet`` gives
key rotation: mint with the first secret, accept every listed one.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Sequence

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from schemas.events import TrackingMode


class LinkKind(enum.StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"
    BOUNCE = "b"


class TokenClaims(msgspec.Struct, frozen=True, array_like=True):
    kind: LinkKind
    message_id: str
    campaign_id: str
    list_id: str
    # None in aggregate mode: the token then does not identify the recipient.
    recipient: str | None = None
    url: str | None = None
    tracking: TrackingMode = TrackingMode.FULL


class TokenError(ValueError):
    """The token is tampered, truncated, signed by an unknown key, or of the wrong kind."""


_MAX_TOKEN_CHARS = 4096
_FERNET_VERSION = 0x80
_MIN_FERNET_BYTES = 1 + 8 + 16 + 16 + 32  # version, timestamp, IV, one AES block, HMAC
_claims_decoder = msgspec.msgpack.Decoder(TokenClaims)
_claims_encoder = msgspec.msgpack.Encoder()


def _fernet_key(secret: str) -> bytes:
    # Operators supply free-form secrets; Fernet needs 32 url-safe base64 bytes.
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


class TokenCodec:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(_fernet_key(s)) for s in secrets])
        # Fernet's signing key is the first half of its key (see the Fernet spec).
        self._signing_keys = [base64.urlsafe_b64decode(_fernet_key(s))[:16] for s in secrets]

    def authentic(self, token: str) -> bool:
        """Whether the token carries a valid HMAC-SHA256 from one of our keys, without decrypting it.

        Cheap enough for the pixel's request path; :meth:`read` still decrypts and checks the kind later.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return False
        if len(data) < _MIN_FERNET_BYTES or data[0] != _FERNET_VERSION:
            return False
        body, mac = data[:-32], data[-32:]
        return any(hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), mac) for key in self._signing_keys)

    def mint(self, claims: TokenClaims) -> str:
        token = self._fernet.encrypt(_claims_encoder.encode(claims)).decode()
        # Fernet pads with '='; trimming keeps links clean and is restored on read.
        return token.rstrip("=")

    def read(self, token: str, expected: LinkKind) -> TokenClaims:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("token missing or too long")
        padded = token + "=" * (-len(token) % 4)
        try:
            raw = self._fernet.decrypt(padded.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise TokenError("invalid or tampered token") from None
        try:
            claims = _claims_decoder.decode(raw)
        except msgspec.MsgspecError:
            raise TokenError("token payload unreadable") from None
        if claims.kind is not expected:
            raise TokenError("token is not valid for this link")
        return claims
