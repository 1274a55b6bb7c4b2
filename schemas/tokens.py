"""Opaque, signed link tokens shared by the sender (which mints) and the edge (which reads).

Tokens are Fernet tokens (AES-128-CBC encrypted, HMAC-SHA256 authenticated,
URL-safe base64), made and read with ``cryptography``'s primitives and checked
against its ``Fernet`` in the tests: signing alone would leave the address
readable in base64, and no address may appear in a URL. Keys rotate as with
``MultiFernet``: mint with the first secret, accept every listed one.

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

Minting is Fernet's too, without its new cipher context per token (3.3 us of its
8): one CBC encryptor per thread runs on from token to token, and each token's
first block is XORed with the encryptor's last ciphertext block as well as with
the token's own random IV, which cancels the chaining, so the token is exactly
AES-CBC under its IV. A message mints three tokens (4.4 us each instead of 8.1).

Keys: each secret's Fernet key (signing half, encryption half) is derived with HKDF for link
tokens alone (:mod:`schemas.key_derivation`). Tokens minted before that (the secret's SHA-256)
are still read, after every HKDF key, so links already in mailboxes keep working; nothing is
minted with them any more. A maximum age per link kind (``max_age``) refuses older tokens with
:class:`TokenExpired`, by the time Fernet records in each token.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from schemas.events import TrackingMode
from schemas.key_derivation import Purpose, derive_key
from schemas.settings import Settings


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


class TokenExpired(TokenError):
    """An authentic token older than its kind's maximum age."""


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
    """The Fernet key (32 url-safe base64 bytes) link tokens are minted with, from a free-form secret."""
    return base64.urlsafe_b64encode(derive_key(secret, Purpose.LINK_TOKENS))


def _legacy_fernet_key(secret: str) -> bytes:
    """The key of tokens minted before keys were derived per purpose: read, never minted with."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


# base64's URL-safe alphabet and back (binascii knows only the standard one).
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_HEADER = struct.Struct(">BQ")  # Fernet's version byte and big-endian timestamp


def _cbc_decrypted(blocks: CipherContext, tokens: Sequence[bytes]) -> bytes:
    """The payloads of ``tokens`` (whole Fernet tokens, one key's), AES-CBC decrypted and run together.

    ``blocks`` is the key's AES block function (ECB); the chaining is done here, for all of them at once:
    each plaintext block is its decrypted block XOR the ciphertext block before it (the IV first)."""
    if len(tokens) == 1:
        (data,) = tokens
        ciphertext, chained = data[_IV_END:-_MAC_BYTES], data[_IV_START : -_MAC_BYTES - _BLOCK]
    else:
        ciphertext = b"".join([data[_IV_END:-_MAC_BYTES] for data in tokens])
        chained = b"".join([data[_IV_START : -_MAC_BYTES - _BLOCK] for data in tokens])
    decrypted = blocks.update(ciphertext)
    return (int.from_bytes(decrypted, "big") ^ int.from_bytes(chained, "big")).to_bytes(len(decrypted), "big")


class _Chained:
    """A CBC encryptor that runs on across tokens, and the last ciphertext block it wrote."""

    __slots__ = ("encryptor", "last")

    def __init__(self, key: algorithms.AES) -> None:
        self.encryptor = Cipher(key, modes.CBC(os.urandom(_BLOCK))).encryptor()
        self.last = int.from_bytes(self.encryptor.update(bytes(_BLOCK)), "big")


class TokenCodec:
    def __init__(self, secrets: Sequence[str], max_age: Mapping[LinkKind, int] | None = None) -> None:
        if not secrets:
            raise ValueError("at least one secret key is required")
        # A Fernet key is the signing key followed by the encryption key (see the Fernet spec).
        # The first is the one tokens are minted with; the legacy keys come after every current one.
        keys = [base64.urlsafe_b64decode(_fernet_key(s)) for s in secrets]
        keys += [base64.urlsafe_b64decode(_legacy_fernet_key(s)) for s in secrets]
        self._max_age = {kind: seconds for kind, seconds in (max_age or {}).items() if seconds > 0}
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
            data = binascii.a2b_base64(token.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(data) < _MIN_FERNET_BYTES or data[0] != _FERNET_VERSION or (len(data) - _IV_END - _MAC_BYTES) % _BLOCK:
            return None
        body, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
        for index in range(len(self._signers)):
            if hmac.compare_digest(self._signature(index, body), mac):
                return Authenticated(data, index)
        return None

    def _signature(self, key: int, body: bytes) -> bytes:
        """HMAC-SHA256 of ``body`` under signing key ``key`` (an index)."""
        signature = self._signers[key].copy()
        signature.update(body)
        return signature.digest()

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
        return self._claims(token.data, _cbc_decrypted(self._blocks_decrypted(token.key), [token.data]), expected)

    def open_all(self, tokens: Sequence[Authenticated], expected: LinkKind) -> list[TokenClaims | TokenError]:
        """:meth:`open` for many tokens: each one's claims, or the error :meth:`open` would raise. The tokens
        of one key are decrypted in one AES call and one XOR (the pixel helper opens thousands a second, and
        those calls were half the cost of opening one)."""
        opened: list[TokenClaims | TokenError] = [TokenError("not opened")] * len(tokens)
        by_key: dict[int, list[int]] = {}
        for index, token in enumerate(tokens):
            by_key.setdefault(token.key, []).append(index)
        for key, indices in by_key.items():
            padded = _cbc_decrypted(self._blocks_decrypted(key), [tokens[i].data for i in indices])
            at = 0
            for index in indices:
                data = tokens[index].data
                size = len(data) - _IV_END - _MAC_BYTES
                try:
                    opened[index] = self._claims(data, padded[at : at + size], expected)
                except TokenError as exc:
                    opened[index] = exc
                at += size
        return opened

    def _claims(self, data: bytes, padded: bytes, expected: LinkKind) -> TokenClaims:
        """The claims in a token's decrypted, still padded payload, checked against what the link expects."""
        pad = padded[-1]
        if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise TokenError("invalid or tampered token")
        try:
            claims = _claims_decoder.decode(padded[:-pad])
        except msgspec.MsgspecError:
            raise TokenError("token payload unreadable") from None
        if claims.kind is not expected:
            raise TokenError("token is not valid for this link")
        max_age = self._max_age.get(expected)
        if max_age is not None and time.time() - _HEADER.unpack_from(data)[1] > max_age:
            raise TokenExpired("this link has expired")
        return claims

    def _encryptor(self) -> _Chained:
        """This thread's CBC encryptor under the first key (the one tokens are minted with)."""
        chained: _Chained | None = getattr(self._contexts, "minting", None)
        if chained is None:
            chained = self._contexts.minting = _Chained(self._encryption_keys[0])
        return chained

    def mint(self, claims: TokenClaims) -> str:
        """A Fernet token of ``claims`` under the first key, without its '=' padding (restored on read)."""
        plaintext = _claims_encoder.encode(claims)
        pad = _BLOCK - len(plaintext) % _BLOCK
        padded = plaintext + bytes((pad,)) * pad  # PKCS7
        iv = os.urandom(_BLOCK)
        chained = self._encryptor()
        # The encryptor XORs the first block with its last ciphertext block: XORing that in as well
        # leaves the first block XOR this token's IV, which is CBC under that IV.
        first = int.from_bytes(padded[:_BLOCK], "big") ^ int.from_bytes(iv, "big") ^ chained.last
        ciphertext = chained.encryptor.update(first.to_bytes(_BLOCK, "big") + padded[_BLOCK:])
        chained.last = int.from_bytes(ciphertext[-_BLOCK:], "big")
        body = _HEADER.pack(_FERNET_VERSION, int(time.time())) + iv + ciphertext
        encoded = binascii.b2a_base64(body + self._signature(0, body), newline=False)
        return encoded.translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def read(self, token: str, expected: LinkKind) -> TokenClaims:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("token missing or too long")
        found = self.authenticate(token)
        if found is None:
            raise TokenError("invalid or tampered token")
        return self.open(found, expected)


DAY_SECONDS = 86_400


def token_codec(settings: Settings) -> TokenCodec:
    """The codec the edge and the sender share: the operator's secrets and maximum ages (0: none)."""
    return TokenCodec(
        settings.secret_keys,
        max_age={
            LinkKind.CLICK: settings.click_token_max_age_days * DAY_SECONDS,
            LinkKind.UNSUBSCRIBE: settings.unsubscribe_token_max_age_days * DAY_SECONDS,
        },
    )
