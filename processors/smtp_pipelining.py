"""Mail transactions pipelined per RFC 2920 on a connection aiosmtplib opened.

aiosmtplib speaks one command at a time: four round trips a message (MAIL, RCPT,
DATA, the content), each behind a lock, a timeout task and a parse, some two hundred
microseconds of Python a message. Most relays (Postfix, Exim, the big providers)
offer PIPELINING, which lets a client send MAIL, RCPT and DATA together and read the
three replies at once: two round trips and a fifth of the work, or one round trip when
the next transaction's commands go out with the content before them. aiosmtplib still
opens the connection (TLS, STARTTLS, EHLO, AUTH, whatever the URL asks); when the relay
offers PIPELINING, its transport is handed to :class:`PipelinedSession`, which runs
the transactions from then on.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import normalize_message_line_endings

from processors.delivery import SmtpOutcome, lost_after_content
from schemas.bounce_reasons import SmtpStage

# Longest reply accepted, as aiosmtplib bounds it: a relay cannot make the sender buffer without end.
MAX_REPLY_BYTES = 32 * 1024
_LEADING_PERIOD = re.compile(rb"(?m)^\.")
Reply = tuple[int, str]


# A bare addr-spec, as intake validates them and the VERP sender is made: quoted as it is. Anything else
# (a display name, a comment, a control character) goes through aiosmtplib's parse, which refuses
# control characters (no command injection).
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@\x00-\x1f\x7f]+@[^\s<>()\[\]\\,;:\"@\x00-\x1f\x7f]+")


def _address(address: str, encoding: str) -> bytes:
    """:raises ValueError: an address SMTP cannot carry (aiosmtplib's parse refused it)"""
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else quote_address(address)
    return quoted.encode(encoding)


def without_smtputf8() -> SmtpOutcome:
    """The answer for an internationalized address when the relay cannot carry it: our relay's limit,
    refused as at MAIL FROM, so it never counts against the recipient."""
    return SmtpOutcome(553, "5.6.7 the relay does not offer SMTPUTF8, which this address needs", SmtpStage.MAIL)


def unquotable(exc: ValueError) -> SmtpOutcome:
    """The answer for an address SMTP cannot carry: permanent, as a relay would refuse its syntax."""
    return SmtpOutcome(553, f"5.1.3 {exc}", SmtpStage.RCPT)


def _content(data: bytes) -> tuple[bytes, bytes]:
    """The message as the relay counts it (CRLF line endings, a final CRLF) and as DATA sends it
    (dot-stuffed, with the ending dot). Rendered messages need neither fix; checking costs less than fixing."""
    content = data
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf or not data.endswith(b"\r\n"):
        content = normalize_message_line_endings(data)
    stuffed = _LEADING_PERIOD.sub(b"..", content) if content.startswith(b".") or b"\n." in content else content
    return content, stuffed + b".\r\n"


class SmtpReplies(asyncio.Protocol):
    """The relay's replies, in the order the commands went; ``expect(n)`` waits for the next ``n``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines read so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._waiters: deque[tuple[int, asyncio.Future[list[Reply]]]] = deque()
        self._failure: aiosmtplib.SMTPException | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(aiosmtplib.SMTPResponseException(-1, f"malformed SMTP reply: {line[:80]!r}"))
                return
            self._lines.append(line[4:].strip().decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append((code, "\n".join(self._lines)))
                self._lines = []
        del self._buffer[:start]
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._fail(aiosmtplib.SMTPResponseException(-1, "SMTP reply too long"))
            return
        self._hand_out()

    def eof_received(self) -> bool:
        return False  # closes the transport; connection_lost fails whoever waits

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        failure = aiosmtplib.SMTPServerDisconnected("connection lost")
        failure.__cause__ = exc
        self._fail(failure)

    def expect(self, count: int) -> asyncio.Future[list[Reply]]:
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            future.set_exception(self._failure)
        else:
            self._waiters.append((count, future))
            self._hand_out()
        return future

    def _hand_out(self) -> None:
        while self._waiters and len(self._replies) >= self._waiters[0][0]:
            count, future = self._waiters.popleft()
            replies = [self._replies.popleft() for _ in range(count)]
            if not future.done():
                future.set_result(replies)

    def _fail(self, failure: aiosmtplib.SMTPException) -> None:
        if self._failure is None:
            self._failure = failure
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(self._failure)
        if self.transport is not None:
            self.transport.close()


class _Envelope:
    """MAIL FROM, RCPT TO and DATA of one transaction, and once written, the future of their three replies."""

    __slots__ = ("commands", "replies")

    def __init__(self, commands: bytes) -> None:
        self.commands = commands
        self.replies: asyncio.Future[list[Reply]] | None = None


class PipelinedSession:
    """One connection's transactions, pipelined: ``MAIL FROM``, ``RCPT TO`` and ``DATA`` together, then the
    content. While one transaction's content goes out, the next transaction's envelope goes with it in the
    same write (RFC 2920 allows the content to open a group): with two senders taking turns on a
    connection, each message costs one write and one round trip.

    Transactions take turns: the turn passes once a transaction's content is written (or its envelope
    failed and was reset), so the commands on the wire and the replies expected stay in the same order.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        """Takes ``client``'s connection over; ``client`` must not be used afterwards."""
        transport = client.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the session began")
        self.timeout = timeout
        self._utf8 = client.supports_extension("smtputf8")
        self._size = client.supports_extension("size")
        self._replies = SmtpReplies()
        self._replies.connection_made(transport)
        transport.set_protocol(self._replies)
        self._transport = transport
        self._turn = asyncio.Lock()  # first come, first served: the queue below has the same order
        self._next: deque[_Envelope] = deque()
        self.carried = 0  # envelopes that went out with the content before them

    @staticmethod
    def offered(client: aiosmtplib.SMTP) -> bool:
        return client.supports_extension("pipelining")

    @property
    def is_connected(self) -> bool:
        return self._replies.transport is not None and not self._transport.is_closing()

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpOutcome:
        """The relay's answer to one single-recipient transaction.

        :raises aiosmtplib.SMTPException: the connection failed or timed out; it is closed
        """
        utf8 = not (envelope_from + recipient).isascii()
        if utf8 and not self._utf8:
            return without_smtputf8()
        encoding = "utf-8" if utf8 else "ascii"
        try:
            sender, rcpt = _address(envelope_from, encoding), _address(recipient, encoding)
        except ValueError as exc:  # before anything is written: the connection stays as it is
            return unquotable(exc)
        mail = b"MAIL FROM:" + sender
        content, body = _content(data)
        if self._size:
            mail += b" SIZE=%d" % len(content)
        if utf8:
            mail += b" SMTPUTF8"
        envelope = _Envelope(mail + b"\r\nRCPT TO:" + rcpt + b"\r\nDATA\r\n")
        content_sent = False  # from then on a lost connection may have left the message with the relay
        try:
            async with asyncio.timeout(self.timeout):
                self._next.append(envelope)  # the transaction before may write it along with its content
                try:
                    await self._turn.acquire()
                except BaseException:
                    if envelope in self._next:
                        self._next.remove(envelope)
                    raise
                try:
                    answered = await self._transaction(envelope, body)
                finally:
                    self._turn.release()
                if isinstance(answered, SmtpOutcome):
                    outcome = answered
                else:
                    content_sent = True
                    ((code, text),) = await answered
                    outcome = SmtpOutcome(code, text, SmtpStage.DATA)
        except TimeoutError:
            self.close()
            if content_sent:
                return lost_after_content("timed out waiting for the relay's answer to it")
            raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the relay's reply") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if not content_sent:
                raise
            self.close()
            return lost_after_content(str(exc))
        if outcome.code == 421:  # the relay is closing this connection
            self.close()
        return outcome

    async def _transaction(self, envelope: _Envelope, body: bytes) -> SmtpOutcome | asyncio.Future[list[Reply]]:
        """With the turn held: the envelope's replies, then either the content written (the future of its
        reply; the turn can pass) or the envelope's failure, the transaction reset."""
        if envelope.replies is None:  # nobody wrote it along: it goes alone
            self._next.remove(envelope)
            self._transport.write(envelope.commands)
            envelope.replies = self._replies.expect(3)
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = await envelope.replies
        envelope_ok = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and envelope_ok:
            following = self._next.popleft() if self._next else None
            self._transport.write(body if following is None else body + following.commands)
            answer = self._replies.expect(1)
            if following is not None:
                following.replies = self._replies.expect(3)
                self.carried += 1
            return answer
        if data_code == 354:
            # RFC 2920 3.1: DATA was taken although the envelope failed; an empty content ends it.
            self._transport.write(b".\r\n")
            await self._replies.expect(1)
        if mail_code != 250:
            outcome = SmtpOutcome(mail_code, mail_text, SmtpStage.MAIL)
        elif not envelope_ok:
            outcome = SmtpOutcome(rcpt_code, rcpt_text, SmtpStage.RCPT)
        else:
            outcome = SmtpOutcome(data_code, data_text, SmtpStage.DATA)
        if 421 in (mail_code, rcpt_code, data_code):
            self.close()  # the relay is closing this connection
        else:
            await self._reset()
        return outcome

    async def _reset(self) -> None:
        # A failed envelope leaves the transaction open on some relays; RSET makes the connection reusable.
        # Its failure does not change the answer already given: the next message gets a new connection.
        self._transport.write(b"RSET\r\n")
        try:
            ((code, _),) = await self._replies.expect(1)
        except aiosmtplib.SMTPException:
            code = 0
        if code != 250:
            self.close()

    async def quit(self) -> None:
        if self.is_connected:
            self._transport.write(b"QUIT\r\n")
            await self._replies.expect(1)
        self.close()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()
