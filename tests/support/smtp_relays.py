"""Real SMTP servers (aiosmtpd) for the mailer's tests, and a way to send through one connection of it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
from collections.abc import Iterator
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailpulse.smtp_sink import MaildirHandler
from processors.delivery import SmtpOutcome
from processors.mailer import SmtpMailer
from processors.render import RenderedMessage
from processors.smtp_pipelining import PipelinedSession
from tests.support.ports import free_port

MESSAGE = b"From: news@example.com\r\nSubject: hi\r\n\r\nfirst line\r\n.a line that starts with a period\r\nlast\r\n"


class QuirkyHandler(MaildirHandler):
    """The embedded sink (PIPELINING offered), plus recipients that make the relay misbehave."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("closing@"):
            return "421 4.3.2 shutting down"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # hangup@ (the sink's own script): stored, and the connection closed before the answer.
        if any(rcpt.startswith("silent@") for rcpt in envelope.rcpt_tos):
            await asyncio.sleep(5)
        return await super().handle_DATA(server, session, envelope)


class OneAtATimeHandler(MaildirHandler):
    """A relay that does not offer PIPELINING (aiosmtpd's own EHLO answer)."""

    handle_EHLO = None  # type: ignore[assignment]


def serve(handler: MaildirHandler, **kwargs: int) -> Iterator[str]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def send_all(mailer: SmtpMailer, recipients: list[str], data: bytes = MESSAGE) -> tuple[list[SmtpOutcome], bool]:
    """Each recipient's outcome over the mailer's one connection, and whether it ended up pipelining."""

    async def run() -> tuple[list[SmtpOutcome], bool]:
        outcomes = [await mailer.send(RenderedMessage(data, "bounces+t@example.com", r)) for r in recipients]
        pipelined = isinstance(mailer._connection, PipelinedSession)
        await mailer.close()
        return outcomes, pipelined

    return asyncio.run(run())


def stored(maildir: Path) -> list[email.message.Message]:
    box = mailbox.Maildir(str(maildir), create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.iterkeys()]
