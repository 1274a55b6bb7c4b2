"""Hostile input, one case a line of the table below: what an attacker or a broken client sends to each
door of the stack (the public edge, the operator edge, the sink's SQL, the bounce receiver, the CLI), as
exact bytes where a client library would refuse to send them, and what a clean refusal of it looks like.

Each case names the answers it may get: HTTP statuses (a request never gets a 5xx), SMTP reply classes
(5 = refused for good, 2 = taken and kept as mail that is not a bounce; never a 4xx "try later" or a
dropped connection), or for the CLI a non-zero exit with a one-line message and no traceback.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.support.webhook_signing import mailgun_signature, sendgrid_headers


@dataclass(frozen=True)
class HttpCase:
    name: str
    port: Callable[[Settings], int]
    request: Callable[[Settings], bytes]
    allowed: frozenset[int]


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
]


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
