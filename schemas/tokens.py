"""Opaque, signed link tokens shared by the sender (which mints) and the edge (which reads).

Tokens are Fernet tokens (AES-128-CBC encrypted, HMAC-SHA256 authenticated,
URL-safe base64) from ``cryptography``: signing alone would leave the address
readable in base64, and no address may appear in a URL. ``MultiFernet`` gives
key rotation: mint with the first secret, accept every listed one.

Reading is done here rather than by ``Fernet.decrypt``, to the same specification,
in two steps: :meth:`TokenCodec.authenticate` checks the HMAC-SHA256
(constant-time), and only a token it accepted can be decrypted
(:meth:`TokenCodec.open`). The pixel's request path authenticates; its helper
process decrypts what the request path accepted. ``Fernet.decrypt`` also builds
a new AES-CBC cipher context for every token (about 6 us of its 9); here each key
has one AES context per thread, and the CBC chaining is the XOR of each decrypted
block with the ciphertext block before it. Every open pixel is decrypted once, so
this decides how much CPU the helper takes from the request loop (``make bench``,
edge suite).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import threading
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

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


class Authenticated(NamedTuple):
    """A token's bytes whose HMAC-SHA256 one of our keys (``key``, an index) verified; still encrypted."""

    data: bytes
    key: int


_MAX_TOKEN_CHARS = 4096
_FERNET_VERSION = 0x80
_IV_START, _IV_END = 9, 25  # after the version byte and the 8-byte timestamp
_MAC_BYTES = 32
_BLOCK = 16
_MIN_FERNET_BYTES = _IV_END + _BLOCK + _MAC_BYTES  # version, timestamp, IV, one AES block, HMAC
_claims_decoder = msgspec.msgpack.Decoder(TokenClaims)
_claims_encoder = msgspec.msgpack.Encoder()


def _fernet_key(secret: str) -> bytes:
    # Operators supply free-form secrets; Fernet needs 32 url-safe base64 bytes.
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


_URLSAFE_ALPHABET = bytes.maketrans(b"-_", b"+/")


class TokenCodec:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(_fernet_key(s)) for s in secrets])
        # A Fernet key is the signing key followed by the encryption key (see the Fernet spec).
        keys = [base64.urlsafe_b64decode(_fernet_key(s)) for s in secrets]
        # Keyed once: a copy of a keyed HMAC costs 1.0 us where hmac.digest, keying anew, costs 1.7.
        self._signers = [hmac.new(key[:16], digestmod=hashlib.sha256) for key in keys]
        self._encryption_keys = [algorithms.AES(key[16:]) for key in keys]
        self._contexts = threading.local()  # a cipher context is not for two threads at once

    def authenticate(self, token: str) -> Authenticated | None:
        """The token's bytes and which key's HMAC-SHA256 they carry; None when no key's, or malformed.

        Cheap enough for the pixel's request path; :meth:`open` decrypts it later, elsewhere.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return None
        try:
            # base64.urlsafe_b64decode, without its argument checks (0.6 us instead of 1.0).
            data = binascii.a2b_base64(token.encode("ascii").translate(_URLSAFE_ALPHABET) + b"=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(data) < _MIN_FERNET_BYTES or data[0] != _FERNET_VERSION or (len(data) - _IV_END - _MAC_BYTES) % _BLOCK:
            return None
        body, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
        for index, signer in enumerate(self._signers):
            signature = signer.copy()
            signature.update(body)
            if hmac.compare_digest(signature.digest(), mac):
                return Authenticated(data, index)
        return None

    def _blocks_decrypted(self, index: int) -> CipherContext:
        """AES with key ``index``, one block at a time: this thread's context, made once."""
        contexts: list[CipherContext | None] | None = getattr(self._contexts, "by_key", None)
        if contexts is None:
            contexts = self._contexts.by_key = [None] * len(self._encryption_keys)
        context = contexts[index]
        if context is None:
            # ECB only as the block function: the chaining below makes it CBC, as Fernet encrypted it.
            context = contexts[index] = Cipher(self._encryption_keys[index], modes.ECB()).decryptor()
        return context

    def open(self, token: Authenticated, expected: LinkKind) -> TokenClaims:
        """The claims of a token :meth:`authenticate` accepted: AES-128-CBC decrypted, PKCS7 padding removed."""
        data = token.data
        ciphertext = data[_IV_END:-_MAC_BYTES]
        blocks = self._blocks_decrypted(token.key).update(ciphertext)
        # CBC: each plaintext block is its decrypted block XOR the ciphertext block before it (the IV first).
        chained = data[_IV_START : -_MAC_BYTES - _BLOCK]
        padded = (int.from_bytes(blocks, "big") ^ int.from_bytes(chained, "big")).to_bytes(len(blocks), "big")
        pad = padded[-1]
        if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise TokenError("invalid or tampered token")
        try:
            claims = _claims_decoder.decode(padded[:-pad])
        except msgspec.MsgspecError:
            raise TokenError("token payload unreadable") from None
        if claims.kind is not expected:
            raise TokenError("token is not valid for this link")
        return claims

    def mint(self, claims: TokenClaims) -> str:
        token = self._fernet.encrypt(_claims_encoder.encode(claims)).decode()
        # Fernet pads with '='; trimming keeps links clean and is restored on read.
        return token.rstrip("=")

    def read(self, token: str, expected: LinkKind) -> TokenClaims:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("token missing or too long")
        found = self.authenticate(token)
        if found is None:
            raise TokenError("invalid or tampered token")
        return self.open(found, expected)
