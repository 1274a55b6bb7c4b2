"""SMTP delivery behind a small interface: one reused connection that aiosmtplib opens, its transactions
pipelined (RFC 2920) when the relay offers it."""

from __future__ import annotations

import logging
import ssl
from typing import Protocol
from urllib.parse import unquote, urlparse

import aiosmtplib

from processors.delivery import SmtpOutcome
from processors.dkim_signing import DkimSigner
from processors.render import RenderedMessage
from processors.smtp_pipelining import PipelinedSession

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, rendered: RenderedMessage) -> SmtpOutcome: ...

    async def close(self) -> None: ...


class SmtpMailer:
    """``smtp://host:port`` (plain, STARTTLS when offered), ``smtps://`` (implicit TLS),
    ``smtp+starttls://`` (STARTTLS required); credentials as ``user:password@``."""

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
        self._client: aiosmtplib.SMTP | None = None
        self._session: PipelinedSession | None = None

    async def _connected(self) -> aiosmtplib.SMTP | PipelinedSession:
        if self._session is not None and self._session.is_connected:
            return self._session
        if self._client is not None and self._client.is_connected:
            return self._client
        self._session = None
        client = aiosmtplib.SMTP(
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
        if self.pipelining and PipelinedSession.offered(client):
            self._client, self._session = None, PipelinedSession(client, self.timeout)
            return self._session
        self._client = client
        return client

    async def send(self, rendered: RenderedMessage) -> SmtpOutcome:
        try:
            connection = await self._connected()
            data = rendered.data if self.signer is None else self.signer.sign(rendered.data)
            if isinstance(connection, PipelinedSession):
                return await connection.send(rendered.envelope_from, rendered.recipient, data)
            _, reply = await connection.sendmail(rendered.envelope_from, [rendered.recipient], data)
            return SmtpOutcome(250, reply)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            await self._reset()
            return SmtpOutcome(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            return SmtpOutcome(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("SMTP connection to %s:%d failed: %s", self.host, self.port, exc)
            await self.close()
            return SmtpOutcome(0, f"connection failed: {exc}")

    async def _reset(self) -> None:
        # A refused recipient leaves the transaction open; RSET keeps the connection reusable.
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.rset()
            except aiosmtplib.SMTPException:
                await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            try:
                await session.quit()
            except aiosmtplib.SMTPException:
                session.close()
        if self._client is not None:
            try:
                if self._client.is_connected:
                    await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
            self._client = None
