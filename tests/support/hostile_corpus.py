"""Hostile input, one case a line of the table below: what an attacker or a broken client sends to each
door of the stack (the public edge, the operator edge, the sink's SQL, the bounce receiver, the CLI), as
exact bytes where a client library would refuse to send them, and what a clean refusal of it looks like.

Each case names the answers it may get: HTTP statuses (a request never gets a 5xx), SMTP reply classes
(5 = refused for good, 2 = taken and kept as mail that is not a bounce; never a 4xx "try later" or a
dropped connection), or for the CLI a non-zero exit with a one-line message and no traceback.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.support.webhook_signing import mailgun_signature, sendgrid_headers


@dataclass(frozen=True)
class HttpCase:
    name: str
    port: Callable[[Settings], int]
    request: Callable[[Settings], bytes]
    allowed: frozenset[int]


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


def public(settings: Settings) -> int:
    return settings.edge_port


def operator(settings: Settings) -> int:
    return settings.operator_port


def sink(settings: Settings) -> int:
    return settings.sink_api_port


def http(method: str, path: bytes, body: bytes = b"", headers: dict[str, str] | None = None, raw: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    if body and "Content-Length" not in (headers or {}) and "Transfer-Encoding" not in (headers or {}):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + raw + b"\r\n\r\n" + body


def token(settings: Settings, kind: LinkKind, recipient: str = "victim@example.org") -> str:
    return TokenCodec(settings.secret_keys).mint(TokenClaims(kind, "m-hostile", "c-hostile", "news", recipient))


def key(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_keys[0]}"}


def campaign(**fields: object) -> bytes:
    body = {
        "campaign_id": "hostile",
        "list_id": "news",
        "subject": "Hello",
        "html": "<p>Hi</p>",
        "text": "Hi",
        "recipients": [{"email": "someone@example.org"}],
    }
    body.update(fields)
    return json.dumps(body).encode()


def forged_token(settings: Settings) -> str:
    good = token(settings, LinkKind.UNSUBSCRIBE)
    return good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")


HTTP_4XX = frozenset(range(400, 500))
GIF = frozenset({200})  # the pixel answers its image whatever the token: a broken image helps nobody
TOO_LARGE = frozenset({431})

HTTP_CASES = [
    # -- the public edge ---------------------------------------------------------------------------------
    HttpCase(
        "oversized unsubscribe body",
        public,
        lambda s: http(
            "POST",
            f"/u/{token(s, LinkKind.UNSUBSCRIBE)}".encode(),
            b"a=" + b"x" * 300_000,
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        frozenset({413}),
    ),
    HttpCase(
        "oversized chunked webhook",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/postmark",
            b"".join(b"4000\r\n" + b"x" * 0x4000 + b"\r\n" for _ in range(64)) + b"0\r\n\r\n",
            {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        ),
        frozenset({401, 413}),
    ),
    HttpCase("a 64 KB header", public, lambda s: http("GET", b"/healthz", headers={"X-Big": "a" * 65_536}), TOO_LARGE),
    HttpCase(
        "10,000 headers",
        public,
        lambda s: http("GET", b"/healthz", raw=b"".join(b"\r\nX-H%d: v" % n for n in range(10_000))),
        TOO_LARGE,
    ),
    HttpCase("raw invalid UTF-8 in the path", public, lambda s: http("GET", b"/c/\xff\xfe\xfd"), HTTP_4XX),
    HttpCase("percent-encoded invalid UTF-8 token", public, lambda s: http("GET", b"/c/%FF%FE%FD"), HTTP_4XX),
    HttpCase("invalid UTF-8 pixel token", public, lambda s: http("GET", b"/o/%FF%FE.gif"), GIF | HTTP_4XX),
    HttpCase(
        "forged unsubscribe token",
        public,
        lambda s: http(
            "POST",
            f"/u/{forged_token(s)}".encode(),
            b"List-Unsubscribe=One-Click",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "truncated click token", public, lambda s: http("GET", f"/c/{token(s, LinkKind.CLICK)[:20]}".encode()), HTTP_4XX
    ),
    HttpCase(
        "CRLF in a click token",
        public,
        lambda s: http("GET", f"/c/{token(s, LinkKind.CLICK)[:30]}%0d%0aSet-Cookie:%20a=b".encode()),
        HTTP_4XX,
    ),
    HttpCase("a 100 KB token", public, lambda s: http("GET", b"/c/" + b"A" * 100_000), HTTP_4XX),
    HttpCase(
        "an open token used to unsubscribe",
        public,
        lambda s: http(
            "POST",
            f"/u/{token(s, LinkKind.OPEN)}".encode(),
            b"List-Unsubscribe=One-Click",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "Content-Length beside Transfer-Encoding (smuggling)",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/postmark",
            b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            {"Content-Length": "5", "Transfer-Encoding": "chunked"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a negative Content-Length",
        public,
        lambda s: http("POST", b"/webhooks/postmark", b"{}", {"Content-Length": "-1"}),
        HTTP_4XX,
    ),
    HttpCase(
        "a CR alone inside a header",
        public,
        lambda s: http("GET", b"/healthz", raw=b"\r\nX-A: b\rInjected: c"),
        HTTP_4XX,
    ),
    HttpCase(
        "JSON nested 100,000 deep to a webhook",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/postmark",
            b"[" * 60_000 + b"]" * 60_000,
            {"Content-Type": "application/json", "Authorization": "Basic cG9zdG1hcms6czNjcmV0LXBhc3M="},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "SES notification with no signature",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/ses",
            json.dumps({"Type": "Notification", "Message": "{}"}).encode(),
            {"Content-Type": "text/plain"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "SendGrid batch signed an hour ago (replayed)",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/sendgrid",
            b'[{"event":"bounce","email":"victim@example.org"}]',
            {
                "Content-Type": "application/json",
                **sendgrid_headers(b'[{"event":"bounce","email":"victim@example.org"}]', timestamp=1_700_000_000),
            },
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "Mailgun event signed with another key",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/mailgun",
            json.dumps(
                {
                    "signature": mailgun_signature("t0k3n", key="not-the-key"),
                    "event-data": {"event": "failed", "severity": "permanent", "recipient": "victim@example.org"},
                }
            ).encode(),
            {"Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "Postmark with a wrong password",
        public,
        lambda s: http(
            "POST",
            b"/webhooks/postmark",
            b'{"RecordType":"SpamComplaint","Email":"victim@example.org"}',
            {"Content-Type": "application/json", "Authorization": "Basic cG9zdG1hcms6d3Jvbmc="},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "an operator route on the public port",
        public,
        lambda s: http("POST", b"/campaigns", campaign(), key(s)),
        HTTP_4XX,
    ),
    # -- the operator edge ---------------------------------------------------------------------------------
    HttpCase(
        "campaign without a key",
        operator,
        lambda s: http("POST", b"/campaigns", campaign(), {"Content-Type": "application/json"}),
        frozenset({401}),
    ),
    HttpCase(
        "campaign with the key in the query",
        operator,
        lambda s: http(
            "POST", f"/campaigns?api_key={s.api_keys[0]}".encode(), campaign(), {"Content-Type": "application/json"}
        ),
        frozenset({401}),
    ),
    HttpCase(
        "CRLF in the subject",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(subject="Hi\r\nBcc: all@example.org"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a header injected through an address",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(recipients=[{"email": "a@example.org\r\nBcc: b@example.org"}]),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "CRLF in the From",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(from_address="x@example.org\r\nReply-To: evil@example.net"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a campaign id with a path and a newline",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(campaign_id="../../etc/passwd\n"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a 2 MB body",
        operator,
        lambda s: http(
            "POST", b"/campaigns", campaign(html="x" * 2_000_000), {**key(s), "Content-Type": "application/json"}
        ),
        frozenset({413}),
    ),
    HttpCase(
        "invalid UTF-8 JSON",
        operator,
        lambda s: http(
            "POST", b"/campaigns", b'{"campaign_id": "\xff\xfe"}', {**key(s), "Content-Type": "application/json"}
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "recipients nested 50,000 deep",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            b'{"recipients": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a forged session cookie",
        operator,
        lambda s: http("GET", b"/ui/campaigns", headers={"Cookie": "mailpulse_session=eyJrZXkiOiAieCJ9.forged.sig"}),
        frozenset({303, 401}),
    ),
]

# SQL that reaches out of the analysts' sandbox: the host's files, the network, other servers, the
# server's own state, or the limits themselves.
HOSTILE_SQL = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString', 'x String')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv')",
    "SELECT * FROM executable('id', 'LineAsString', 'x String')",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT name FROM system.users",
    "SELECT * FROM system.settings",
    "SELECT * FROM information_schema.tables",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 100000",
    "INSERT INTO events (event_id) VALUES ('x')",
    "DROP TABLE events",
    "SELECT 1; DROP TABLE events",
    "CREATE TEMPORARY TABLE t AS SELECT * FROM file('/etc/hostname')",
    "SELECT getSetting('readonly')",
    "SELECT * FROM events INTO OUTFILE '/tmp/x'",
    "SELECT * FROM numbers(10) FORMAT Native",
    "SYSTEM SHUTDOWN",
    "",
    "SELECT '\udcff'".encode("utf-8", "surrogateescape").decode("latin-1"),
]
HTTP_CASES += [
    HttpCase(
        f"SQL: {statement[:60] or '(empty)'}",
        sink,
        lambda s, statement=statement: http("POST", b"/sql", statement.encode("latin-1", "replace"), key(s)),
        HTTP_4XX,
    )
    for statement in HOSTILE_SQL
]


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


def http_status(port: int, request: bytes, timeout: float = 30.0) -> int:
    """The status line's code; 0 when the server closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before it read it all
            sock.sendall(request)
        head = b""
        try:
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
    status = head.split(b" ", 2)
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else 0


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
