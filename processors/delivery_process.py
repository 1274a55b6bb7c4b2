"""The delivery process: SMTP on the worker's other core, fed jobs over a socket pair (:mod:`processors.courier`).

Senders take turns on each of its reused connections, each taking the next job handed over. Jobs and
answers cross as length-prefixed msgpack frames, several per frame when they come together. The worker can
take back what has not begun: a paused campaign's jobs (:class:`WithdrawFrame`), or those to a recipient
just suppressed or of a partition whose events fell behind (:class:`RecheckFrame`). A job that waited past its
``begin_by`` is given back unsent as well: the check made when it was handed over is too old by then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from processors.delivery import SmtpOutcome
from processors.dkim_signing import DkimSigner
from processors.frames import Frames, stream_pair
from processors.mailer import Mailer, SmtpMailer
from processors.render import RenderedMessage
from schemas.bounce_reasons import SmtpStage
from schemas.keys import normalize_address
from schemas.settings import Settings

log = logging.getLogger(__name__)

# Senders taking turns on each connection: while one waits for its content's reply, the next one's envelope
# has gone out with that content (processors.smtp_pipelining), one write and one round trip a message.
SENDERS_PER_CONNECTION = 2
# The delivery process holds finished outcomes this long for others to share their frame.
OUTCOME_LINGER_SECONDS = 0.001
QUIT_SECONDS = 2.0


class JobFrame(msgspec.Struct, array_like=True, tag="job"):
    seq: int
    envelope_from: str
    recipient: str
    data: bytes
    campaign: str = ""
    partition: int = -1  # of the outbox: its events' partition
    # time.monotonic() (the machine's clock, the worker's too) past which its transaction must not begin: the
    # suppression check made at its hand-off may have missed an unsubscribe by then. 0: no limit.
    begin_by: float = 0.0
    # Given back before and handed over again: it goes before the jobs that never waited, or a queue longer
    # than ``begin_by`` allows (a slow relay) would give it back again and again.
    again: bool = False


class WithdrawFrame(msgspec.Struct, array_like=True, tag="withdraw"):
    """Drop every queued job of ``campaign`` (paused or cancelled): each is answered :data:`WITHDRAWN`."""

    campaign: str


class RecheckFrame(msgspec.Struct, array_like=True, tag="recheck"):
    """Give back every queued job to ``recipient`` (just suppressed), or of ``partition`` (its events fell
    behind): each is answered :data:`RECHECK`, and the worker checks it again before handing it over anew."""

    recipient: str = ""
    partition: int = -1


# The code of a job withdrawn before its SMTP transaction began: nothing went out.
WITHDRAWN = -1
RECHECK = -2


class AnswerFrame(msgspec.Struct, array_like=True):
    seq: int
    code: int  # the SMTP answer; 0 when none came (connection failed)
    reply: str
    answered_at: float  # unix time
    stage: str = ""  # SmtpStage: the command answered
    after_content: bool = False  # the content went out unanswered: the relay may have it


def smtp_mailers(settings: Settings) -> list[Mailer]:
    """One mailer per connection the delivery process keeps (``MAILPULSE_SMTP_CONNECTIONS``)."""
    signer = None
    if settings.dkim_selector:
        key_file = Path(settings.dkim_private_key_file)
        signer = DkimSigner.from_files(settings.dkim_selector, settings.dkim_domain, key_file)
    return [
        SmtpMailer(settings.smtp_url, signer=signer, pipelining=settings.smtp_pipelining)
        for _ in range(settings.smtp_connections)
    ]


def process_main(settings: Settings, conn: Connection) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_serve(settings, conn))
    finally:
        # The worker is gone: nobody is left to record an outcome, so nothing here is worth waiting for.
        # (asyncio.run would wait for every task to take its cancellation; an SMTP exchange cut off
        # mid-way may never do so, and the process stayed behind its killed worker.)
        os._exit(0)


async def _serve(settings: Settings, conn: Connection) -> None:
    """The delivery process: senders on each SMTP connection, each taking the next job, until the worker goes."""
    reader, writer = await stream_pair(conn)
    # Answers wait up to a millisecond for company (the worker queued enough to cover it).
    frames = Frames(
        reader,
        writer,
        msgspec.msgpack.Decoder(list[JobFrame | WithdrawFrame | RecheckFrame]).decode,
        OUTCOME_LINGER_SECONDS,
        settings.smtp_connections,
    )
    # (0 for a job handed over again, else 1; its seq): first come, first served within each.
    jobs: asyncio.PriorityQueue[tuple[int, int, JobFrame]] = asyncio.PriorityQueue()

    async def sender(mailer: Mailer) -> None:
        while True:
            _, _, job = await jobs.get()
            if job.begin_by and time.monotonic() > job.begin_by:
                # Waited too long behind others (or this process was starved): checked again first.
                frames.put(AnswerFrame(job.seq, RECHECK, "its check is too old", time.time()))
                continue
            try:
                outcome = await mailer.send(RenderedMessage(job.data, job.envelope_from, job.recipient))
            except Exception as exc:  # not the relay's answer: retried like a failed connection, and logged
                log.exception("sending message %d failed", job.seq)
                with contextlib.suppress(Exception):  # a fresh connection for the next job, if it comes to that
                    await mailer.close()
                outcome = SmtpOutcome(0, f"delivery failed: {exc}", SmtpStage.CONNECT)
            # When the relay answered.
            frames.put(
                AnswerFrame(
                    job.seq, outcome.code, outcome.reply, time.time(), str(outcome.stage), outcome.after_content
                )
            )

    def give_back(taken: Callable[[JobFrame], bool], code: int, reply: str) -> None:
        """Answer the queued jobs ``taken`` picks with ``code``, keeping the others in their order."""
        kept = []
        while not jobs.empty():
            queued = jobs.get_nowait()
            job = queued[-1]
            if taken(job):
                frames.put(AnswerFrame(job.seq, code, reply, time.time()))
            else:
                kept.append(queued)
        for queued in kept:
            jobs.put_nowait(queued)

    def withdraw(frame: WithdrawFrame | RecheckFrame) -> None:
        if isinstance(frame, WithdrawFrame):
            give_back(lambda job: job.campaign == frame.campaign, WITHDRAWN, "withdrawn before its transaction")
        elif frame.recipient:
            give_back(lambda job: normalize_address(job.recipient) == frame.recipient, RECHECK, "to check again")
        else:
            give_back(lambda job: job.partition == frame.partition, RECHECK, "to check again")

    mailers = smtp_mailers(settings)
    senders = [asyncio.create_task(sender(mailer)) for mailer in mailers for _ in range(SENDERS_PER_CONNECTION)]
    try:
        while True:
            try:
                for frame in await frames.read():
                    if isinstance(frame, WithdrawFrame | RecheckFrame):
                        withdraw(frame)
                    else:
                        jobs.put_nowait((0 if frame.again else 1, frame.seq, frame))
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the worker is gone: nobody is left to record an outcome
    finally:
        for task in senders:
            task.cancel()
        # A polite QUIT on each connection, if the relay answers at once.
        await asyncio.wait([asyncio.ensure_future(mailer.close()) for mailer in mailers], timeout=QUIT_SECONDS)
