"""The embedded SMTP sink (aiosmtpd): stores every message in a Maildir and
answers with scripted failures for demo and test recipients.

Local parts starting with ``hardbounce`` get ``550 5.1.1``, ``softbounce``
``452 4.2.2``, and ``retryonce`` ``451 4.3.0`` on the first attempt only;
``hangup`` messages are stored and the connection closed before the answer
to their content, as a relay that loses the connection after taking a message.
``MAILPULSE_SMTP_SINK_REPLIES`` names a file of further answers, one a line:
``pattern<TAB>stage<TAB>reply``, the pattern matched (fnmatch) against the
recipient, the stage ``rcpt`` or ``data`` (when to refuse), ``\n`` between the
lines of a multi-line reply: a relay that answers as the big receivers do
(``*@blocked.example	rcpt	550 5.7.1 ... blocked using Spamhaus``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import mailbox
import signal
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)


def scripted_reply(address: str, seen_retry: set[str]) -> str | None:
    """The failure reply the sink gives this recipient, or None to accept it."""
    local = address.split("@", 1)[0].lower()
    if local.startswith("hardbounce"):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
    if local.startswith("softbounce"):
        return f"452 4.2.2 <{address}>: Mailbox full, try again later"
    if local.startswith("retryonce") and address.lower() not in seen_retry:
        seen_retry.add(address.lower())
        return f"451 4.3.0 <{address}>: Temporary local problem, please try again"
    return None


@dataclass(frozen=True)
class ScriptedReply:
    pattern: str
    stage: str  # "rcpt" or "data"
    reply: str


def load_replies(path: str) -> list[ScriptedReply]:
    """The scripted answers of a ``MAILPULSE_SMTP_SINK_REPLIES`` file (see the module docstring)."""
    if not path:
        return []
    replies = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        pattern, stage, reply = [*line.split("\t", 2), "", ""][:3]
        if stage not in ("rcpt", "data") or reply[:1] not in ("4", "5"):
            raise ValueError(f"{path}:{number}: expected pattern<TAB>rcpt|data<TAB>4xx/5xx reply")
        replies.append(ScriptedReply(pattern.lower(), stage, reply.replace("\\n", "\r\n")))
    return replies


class MaildirHandler:
    def __init__(self, maildir: Path, replies: list[ScriptedReply] | None = None) -> None:
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(maildir), create=True)
        self.seen_retry: set[str] = set()
        self.stored = 0
        self.replies = replies or []

    def _scripted(self, address: str, stage: str) -> str | None:
        lowered = address.lower()
        for scripted in self.replies:
            if scripted.stage == stage and fnmatch.fnmatchcase(lowered, scripted.pattern):
                return scripted.reply
        return None

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        # aiosmtpd reads commands from a buffered stream and answers them in order, so pipelined
        # commands work; saying so lets the sender pipeline here as it does with real relays (RFC 2920).
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._scripted(address, "rcpt") or scripted_reply(address, self.seen_retry)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            refused = self._scripted(rcpt, "data")
            if refused is not None:
                return refused  # one recipient per transaction, as the sender sends them
        for rcpt in envelope.rcpt_tos:
            trace = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode()
            self.maildir.add(trace + content)
            self.stored += 1
        if any(rcpt.split("@", 1)[0].lower().startswith("hangup") for rcpt in envelope.rcpt_tos):
            assert server.transport is not None
            server.transport.close()  # stored, and gone before the answer: the sender cannot know
        return "250 2.0.0 Message accepted for delivery"


def start_sink(maildir: Path, host: str, port: int, replies: list[ScriptedReply] | None = None) -> Controller:
    handler = MaildirHandler(maildir, replies)
    controller = Controller(handler, hostname=host, port=port, data_size_limit=10 * 1024 * 1024)
    controller.start()
    return controller


def serve(maildir: Path, host: str = "127.0.0.1", port: int = 2525, replies: list[ScriptedReply] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    # aiosmtpd logs every command with addresses at INFO; keep addresses out of the logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = start_sink(maildir, host, port, replies)
    log.info("SMTP sink listening on %s:%d, Maildir %s", host, port, maildir)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
        log.info("SMTP sink stopped")
