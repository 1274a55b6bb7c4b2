"""Opaque, signed link tokens shared by the sender (which mints) and the edge (which reads).

Tokens are Fernet tokens (AES-128-CBC encrypted, HMAC-SHA256 authenticated,
URL-safe base64) from ``cryptography``: signing alone would leave the address
readable in base64, and no address may appear in a URL. ``MultiFernet`` gives
key rotation: mint with the first secret, accept every listed one.
"""

from __future__ import annotations

import base64
import enum
import hashlib
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
