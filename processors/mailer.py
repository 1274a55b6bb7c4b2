"""SMTP delivery behind a small interface: one reused connection that aiosmtplib opens, its transactions
pipelined (RFC 2920) when the relay offers it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import aiosmtplib
import dkim

from processors.delivery import SmtpOutcome, lost_after_content
from processors.dkim_signing import DkimSigner
from processors.render import RenderedMessage
from processors.smtp_pipelining import PipelinedSession, unquotable, without_smtputf8
from schemas.bounce_reasons import SmtpStage

log = logging.getLogger(__name__)

# aiosmtplib's client (one command at a time) or, when the relay offers PIPELINING, the session over its transport.
Connection = aiosmtplib.SMTP | PipelinedSession


class _ContentTracking(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when a transaction reached DATA: a connection lost from then on may
    have left the message with the relay (its answer never came)."""

    content_sent = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.content_sent = True
        return await super().data(*args, **kwargs)


class Mailer(Protocol):
    async def send(self, rendered: RenderedMessage) -> SmtpOutcome: ...

    async def close(self) -> None: ...


class SmtpMailer:
    """``smtp://host:port`` (plain, STARTTLS when offered), ``smtps://`` (implicit TLS),
    ``smtp+starttls://`` (STARTTLS required); credentials as ``user:password@``.

    Several senders may share one mailer: pipelined transactions take turns on the connection (and
    overlap, see :class:`PipelinedSession`); aiosmtplib's go one at a time."""

    def __init__(
        self, url: str, timeout: float = 30.0, signer: DkimSigner | None = None, pipelining: bool = True
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError(f"MAILPULSE_SMTP_URL must be smtp://, smtps:// or smtp+starttls://, got {url!r}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (465 if parsed.scheme == "smtps" else 25)
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.use_tls = parsed.scheme == "smtps"
        self.start_tls: bool | None = True if parsed.scheme == "smtp+starttls" else None
        self.timeout = timeout
        self.signer = signer
        self.pipelining = pipelining
        self._connection: Connection | None = None
        self._connecting = asyncio.Lock()
        self._one_at_a_time = asyncio.Lock()

    async def _connected(self) -> Connection:
        async with self._connecting:
            if self._connection is not None and self._connection.is_connected:
                return self._connection
            self._connection = None
            client = _ContentTracking(
                hostname=self.host,
                port=self.port,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout,
                tls_context=ssl.create_default_context() if (self.use_tls or self.start_tls) else None,
            )
            await client.connect()
            if self.username and self.password:
                await client.login(self.username, self.password)
            if client.is_ehlo_or_helo_needed:
                # After STARTTLS, or on implicit TLS, the relay has not said yet what it offers.
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    if not client.is_connected:
                        raise
                    await client.helo()
            if self.pipelining and PipelinedSession.offered(client):
                self._connection = PipelinedSession(client, self.timeout)
            else:
                self._connection = client
            return self._connection

    async def send(self, rendered: RenderedMessage) -> SmtpOutcome:
        # Failures before anything is written are this message's alone: the connection, which another
        # sender may be using, stays open.
        try:
            data = rendered.data if self.signer is None else self.signer.sign(rendered.data)
        except dkim.DKIMException as exc:  # a key dkimpy cannot use: retried, and failed in the end
            log.error("DKIM signing failed: %s", exc)
            return SmtpOutcome(0, f"DKIM signing failed: {exc}", SmtpStage.CONNECT)
        connection: Connection | None = None
        try:
            connection = await self._connected()
            if isinstance(connection, PipelinedSession):
                outcome = await connection.send(rendered.envelope_from, rendered.recipient, data)
                if outcome.after_content:
                    self._drop(connection)  # the session closed itself; the next message reconnects
                return outcome
            async with self._one_at_a_time:
                return await self._send_alone(connection, rendered.envelope_from, rendered.recipient, data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("SMTP connection to %s:%d failed: %s", self.host, self.port, exc)
            self._drop(connection)
            if isinstance(connection, _ContentTracking) and connection.content_sent:
                return lost_after_content(str(exc))
            return SmtpOutcome(0, f"connection failed: {exc}", SmtpStage.CONNECT)

    @staticmethod
    async def _send_alone(client: aiosmtplib.SMTP, envelope_from: str, recipient: str, data: bytes) -> SmtpOutcome:
        if isinstance(client, _ContentTracking):
            client.content_sent = False
        options: list[str] = []
        if not (envelope_from + recipient).isascii():
            # aiosmtplib would refuse the address as unquotable, a "bad address" that is only our relay's.
            if not client.supports_extension("smtputf8"):
                return without_smtputf8()
            options.append("SMTPUTF8")
        try:
            _, reply = await client.sendmail(envelope_from, [recipient], data, mail_options=options)
            return SmtpOutcome(250, reply, SmtpStage.DATA)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            outcome = SmtpOutcome(refused.code, refused.message, SmtpStage.RCPT)
        except aiosmtplib.SMTPSenderRefused as exc:
            outcome = SmtpOutcome(exc.code, exc.message, SmtpStage.MAIL)
        except aiosmtplib.SMTPDataError as exc:
            outcome = SmtpOutcome(exc.code, exc.message, SmtpStage.DATA)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = SmtpOutcome(exc.code, exc.message)
        except ValueError as exc:  # aiosmtplib cannot quote an address: it never will
            outcome = unquotable(exc)
        # A refused recipient leaves the transaction open; RSET keeps the connection reusable.
        try:
            await client.rset()
        except aiosmtplib.SMTPException:
            client.close()  # the answer stands; the next message gets a new connection
        return outcome

    def _drop(self, connection: Connection | None) -> None:
        """Close the connection that failed (another sender may already have opened the next one)."""
        if connection is None:
            return
        if connection is self._connection:
            self._connection = None
        connection.close()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.is_connected:
                await connection.quit()  # closes it too
                return
        except aiosmtplib.SMTPException:
            pass
        connection.close()
