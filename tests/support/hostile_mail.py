"""The hostile corpus's mail and command-line cases (the HTTP ones are in tests/support/hostile_corpus.py):
what is sent to the bounce and mailto: receiver over SMTP, and to the CLI, and what a clean refusal is."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from schemas.settings import Settings


@dataclass(frozen=True)
class SmtpCase:
    name: str
    # The conversation after the greeting: each command line (bytes, sent as they are) and, for DATA, the
    # message; the last reply is the one judged.
    commands: Callable[[Settings], list[bytes]]
    allowed: frozenset[int]  # reply classes: 2 or 5


@dataclass(frozen=True)
class CliCase:
    name: str
    args: Callable[[Settings], list[str]]


def _mail(settings: Settings, message: bytes, rcpt: str | None = None) -> list[bytes]:
    to = rcpt or f"bounces+hostile@{settings.bounce_domain}"
    return [b"EHLO hostile.example", b"MAIL FROM:<>", f"RCPT TO:<{to}>".encode(), b"DATA", message]


def _dsn(body: EmailMessage | None = None, extra_parts: int = 0) -> bytes:
    outer = EmailMessage()
    outer["From"] = "MAILER-DAEMON@mx.example.net"
    outer["To"] = "bounces+hostile@example"
    outer["Subject"] = "Undelivered Mail Returned to Sender"
    outer.set_content(
        "This is the mail system at host mx.example.net.\n\n<victim@example.org>: host said 550 5.1.1 unknown\n"
    )
    if body is not None:
        outer.add_attachment(body)
    for n in range(extra_parts):
        outer.add_attachment(f"part {n}\n", filename=f"p{n}.txt")
    return outer.as_bytes()


def _nested(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\n550 5.1.1 <victim@example.org> unknown\r\n"
    for level in range(depth):
        boundary = b"b%d" % level
        inner = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\r\n\r\n--'
            + boundary
            + b"\r\n"
            + inner
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    return b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure\r\nMIME-Version: 1.0\r\n" + inner


def _bomb() -> bytes:
    compressed = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # about 50 KB that open to 50 MB
    outer = EmailMessage()
    outer["From"] = "MAILER-DAEMON@mx.example.net"
    outer["Subject"] = "Delivery Status Notification (Failure)"
    outer.set_content("550 5.1.1 <victim@example.org>: Recipient address rejected\n")
    outer.add_attachment(compressed, maintype="application", subtype="gzip", filename="details.txt.gz")
    outer.add_attachment(compressed, maintype="application", subtype="octet-stream", filename="status.gz")
    return outer.as_bytes()


SMTP_2_OR_5 = frozenset({2, 5})
SMTP_CASES = [
    SmtpCase(
        "a bounce over the size limit",
        lambda s: _mail(s, b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1_100),
        frozenset({5}),
    ),
    SmtpCase("MIME nested 2,000 deep", lambda s: _mail(s, _nested(2_000)), SMTP_2_OR_5),
    SmtpCase("a bounce with 3,000 parts", lambda s: _mail(s, _dsn(extra_parts=3_000)), SMTP_2_OR_5),
    SmtpCase("gzip parts that open to 50 MB", lambda s: _mail(s, _bomb()), SMTP_2_OR_5),
    SmtpCase(
        "a 200 KB header line", lambda s: _mail(s, b"Subject: " + b"x" * 200_000 + b"\r\n\r\nbody\r\n"), SMTP_2_OR_5
    ),
    SmtpCase(
        "invalid UTF-8 headers and body",
        lambda s: _mail(s, b"Subject: \xff\xfe\xfd\r\nFrom: \xc3\x28@x\r\n\r\n550 \xff\xfe <victim@example.org>\r\n"),
        SMTP_2_OR_5,
    ),
    SmtpCase(
        "a NUL-laden message", lambda s: _mail(s, b"Subject: nul\r\n\r\n" + b"\0" * 10_000 + b"\r\n"), SMTP_2_OR_5
    ),
    SmtpCase(
        "mail for another domain (open relay)",
        lambda s: [b"EHLO h", b"MAIL FROM:<a@example.net>", b"RCPT TO:<victim@example.org>"],
        frozenset({5}),
    ),
    SmtpCase(
        # Taken as one bad line or as two commands, the relay attempt it carries ends refused.
        "a bare LF smuggled command",
        lambda s: [b"EHLO h", b"MAIL FROM:<>\nRCPT TO:<victim@example.org>", b"RCPT TO:<victim@example.org>"],
        frozenset({5}),
    ),
    SmtpCase(
        "a forged mailto: unsubscribe token",
        lambda s: [
            b"EHLO h",
            b"MAIL FROM:<a@example.net>",
            f"RCPT TO:<unsubscribe+{'a' * 42}@{s.unsubscribe_domain}>".encode(),
        ],
        frozenset({5}),
    ),
    SmtpCase(
        "a 10,000-character address",
        lambda s: [b"EHLO h", b"MAIL FROM:<>", f"RCPT TO:<{'a' * 10_000}@{s.bounce_domain}>".encode()],
        frozenset({5}),
    ),
]


def smtp_conversation(port: int, commands: list[bytes], timeout: float = 30.0) -> list[int]:
    """The reply codes of each step (greeting first); a dropped connection ends the list with 0."""
    replies: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        reader = sock.makefile("rb")

        def reply() -> int:
            while True:
                line = reader.readline(1_000_000)
                if not line:
                    return 0
                if line[3:4] != b"-":
                    return int(line[:3]) if line[:3].isdigit() else 0

        replies.append(reply())
        data_next = False
        for command in commands:
            try:
                if data_next:
                    payload = command.replace(b"\r\n.", b"\r\n..")
                    sock.sendall(payload + (b"" if payload.endswith(b"\r\n") else b"\r\n") + b".\r\n")
                else:
                    sock.sendall(command + b"\r\n")
            except OSError:
                replies.append(0)
                return replies
            code = reply()
            replies.append(code)
            if code == 0 or code >= 400:
                return replies
            data_next = command == b"DATA"
    return replies


CLI_CASES = [
    CliCase("sql with a table function", lambda s: ["sql", "SELECT * FROM file('/etc/passwd', 'LineAsString')"]),
    CliCase(
        "suppress an address with a line break", lambda s: ["suppression", "add", "a@example.org\r\nBcc: b@example.org"]
    ),
    CliCase("check an address that is not one", lambda s: ["suppression", "check", "not an address"]),
    CliCase("a report for a campaign id with a newline", lambda s: ["report", "--campaign", "x\r\nDROP TABLE events"]),
    CliCase(
        "replay from a topic that is not ours",
        lambda s: ["replay", "--topic", "__consumer_offsets", "--from-offset", "0"],
    ),
    CliCase(
        "replay with a time that is not one",
        lambda s: ["replay", "--topic", "mailpulse.events", "--from-time", "yesterday-ish"],
    ),
]
