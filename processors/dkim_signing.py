"""DKIM signing (dkimpy) of rendered messages; the signed headers include the RFC 8058 pair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"mime-version",
    b"content-type",
)


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    private_key: bytes

    @classmethod
    def from_files(cls, selector: str, domain: str, key_file: Path) -> DkimSigner:
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the DKIM private key {key_file}: {exc.strerror}") from None
        return cls(selector, domain, key)

    def signature_header(self, message: bytes) -> bytes:
        """The ``DKIM-Signature: ...`` header line (CRLF-terminated) to put on top of ``message``."""
        signature: bytes = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return signature

    def sign(self, message: bytes) -> bytes:
        return self.signature_header(message) + message
