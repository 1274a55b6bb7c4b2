"""Reading one mail for the bounce readers: its headers, a part's text by type, its human-readable text.

fast-mail-parser (Rust) reads most mail: the stdlib parser cost most of a bounce's time. The stdlib reads
what it cannot, and builds the message flufl.bounce's detectors need, only when they run.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from typing import Any

import fast_mail_parser


def address_of(value: str | None) -> str | None:
    if not value:
        return None
    # "rfc822; user@example.org" or "<user@example.org>"
    value = str(value).split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else None


def header_fields(block: str) -> dict[str, str]:
    """Header fields of one header block (names lowercased, continuation lines unfolded, first one wins)."""
    fields: dict[str, str] = {}
    name: str | None = None
    for line in block.splitlines():
        if not line.strip():
            break
        if line[:1] in " \t":
            if name is not None:
                fields[name] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            name = None
            continue
        name = key.strip().lower()
        if name in fields:
            name = None  # a repeated field: the first one stands
            continue
        fields[name] = value.strip()
    return fields


class MailView:
    """What the readers need of a mail: its headers, the text of a part by type, its human-readable
    text, and (only for non-standard bounces, which flufl.bounce reads) the stdlib message."""

    def headers(self, name: str) -> list[str]:
        raise NotImplementedError

    def part_text(self, content_type: str) -> str | None:
        raise NotImplementedError

    @property
    def text(self) -> str:
        raise NotImplementedError

    def header(self, name: str) -> str:
        values = self.headers(name)
        return values[0] if values else ""

    def message(self) -> Message:
        raise NotImplementedError


class _Mail(MailView):
    """A mail parsed by the stdlib, its parts listed once and its text decoded once."""

    __slots__ = ("_text", "msg", "parts")

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.parts = [(part.get_content_type(), part) for part in msg.walk()]
        self._text: str | None = None

    def headers(self, name: str) -> list[str]:
        return [str(v) for v in self.msg.get_all(name) or []]

    def message(self) -> Message:
        return self.msg

    def part_text(self, content_type: str) -> str | None:
        part = next((part for kind, part in self.parts if kind == content_type), None)
        if part is None:
            return None
        payload = part.get_payload()
        if isinstance(payload, list):  # message/*: the parser made messages of the blocks
            return "\n".join(block.as_string() for block in payload if isinstance(block, Message))
        decoded = part.get_payload(decode=True)
        return decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else str(payload)

    @property
    def text(self) -> str:
        if self._text is None:
            chunks: list[str] = []
            for kind, part in self.parts:
                if kind in ("text/plain", "text/html") and not part.is_multipart():
                    if kind == "text/html" and chunks:
                        continue  # the plain alternative says the same
                    payload = part.get_payload(decode=True)
                    if isinstance(payload, bytes):
                        chunks.append(payload.decode(part.get_content_charset() or "latin-1", "replace"))
            self._text = "\n".join(chunks)
        return self._text


class _FastMail(MailView):
    """A mail read by fast-mail-parser (Rust): the stdlib parser cost most of a bounce's time. The stdlib
    message is made only for flufl.bounce, when a non-standard bounce needs its detectors."""

    __slots__ = ("_headers", "_message", "_parts", "_raw", "_text")

    def __init__(self, parsed: Any, raw: bytes) -> None:
        self._raw = raw
        self._message: Message | None = None
        self._headers: dict[str, list[str]] = {name.lower(): values for name, values in parsed.headers.items()}
        self._parts = [(a.mimetype.lower(), a.content) for a in parsed.attachments]
        self._text = "\n".join(parsed.text_plain)

    def headers(self, name: str) -> list[str]:
        return self._headers.get(name.lower(), [])

    def part_text(self, content_type: str) -> str | None:
        content = next((content for kind, content in self._parts if kind == content_type), None)
        return None if content is None else bytes(content).decode("utf-8", "replace")

    @property
    def text(self) -> str:
        return self._text

    def message(self) -> Message:
        if self._message is None:
            self._message = email.message_from_bytes(self._raw, policy=email.policy.compat32)
        return self._message


def read_mail(raw: bytes) -> MailView:
    """The fast parser, or the stdlib one for what it cannot read (it reads what it can of anything)."""
    try:
        parsed = fast_mail_parser.parse_email(raw)
    except Exception:  # ParseError or worse
        parsed = None
    if parsed is not None and parsed.headers:
        return _FastMail(parsed, raw)
    return _Mail(email.message_from_bytes(raw, policy=email.policy.compat32))
