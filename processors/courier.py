"""SMTP in a delivery process of the worker's own, beside its stream loop.

The worker's event loop reads Kafka, gates each request against the suppression table,
renders the message, keeps the sent-log and publishes the outcomes. Speaking SMTP
(tens to hundreds of microseconds of Python a message, most of it system calls)
would take most of that loop, so a delivery process spawned with the worker does it, on
the other core, over its own reused connections: two senders per connection, each taking
the next message handed over.

The loop hands a message over only once the delivery process has room for it (a window of
``QUEUED_PER_CONNECTION`` per connection), and checks the suppression table again right before: an
unsubscribe applied while its batch waited still stops the message. Messages and outcomes
cross a socket pair as length-prefixed msgpack frames, several per frame when they come
together. If the delivery process dies, every message in it fails with
:class:`CourierError` (its batch is read again; the sent-log counts what may have gone
out), and the next one starts a new process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path

import msgspec

from processors.delivery import WITHDRAWN_REASON, DeliveryResult, SmtpOutcome
from processors.dkim_signing import DkimSigner
from processors.frames import Frames, stream_pair
from processors.mailer import Mailer, SmtpMailer
from processors.render import RenderContext, RenderedMessage, RenderError, render_message
from schemas.attribution import BounceAddresses
from schemas.bounce_reasons import SmtpStage
from schemas.events import SendRequest, utcnow
from schemas.mailto import MailtoAddresses
from schemas.settings import Settings
from schemas.tokens import token_codec

log = logging.getLogger(__name__)

# Requests handed over per connection before the loop waits: enough that the delivery process never
# runs dry while the loop is busy elsewhere (a batch of events or the next send batch's gate holds it
# for tens of milliseconds, and answers wait in the socket meanwhile), few enough that the suppression
# check before the hand-off stays well under a second old when the message goes out (512 at 16
# connections: some 130 ms of sending on the bench machine). Alternating in one run (medians of 3):
# 4 -> 8 per connection 3,606 -> 3,962 msg/s; 8 -> 16 3,451 -> 3,974; 16 -> 32 3,754 -> 4,060.
QUEUED_PER_CONNECTION = 32
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


class WithdrawFrame(msgspec.Struct, array_like=True, tag="withdraw"):
    """Drop every queued job of ``campaign`` (paused or cancelled): each is answered :data:`WITHDRAWN`."""

    campaign: str


# The code of a job withdrawn before its SMTP transaction began: nothing went out.
WITHDRAWN = -1


class AnswerFrame(msgspec.Struct, array_like=True):
    seq: int
    code: int  # the SMTP answer; 0 when none came (connection failed)
    reply: str
    answered_at: float  # unix time
    stage: str = ""  # SmtpStage: the command answered
    after_content: bool = False  # the content went out unanswered: the relay may have it


class CourierError(RuntimeError):
    """The delivery process went away with requests in it; whether they were mailed is unknown."""


def render_context(settings: Settings) -> RenderContext:
    return RenderContext(
        tokens=token_codec(settings),
        public_base_url=settings.public_base_url,
        bounce_domain=settings.bounce_domain,
        bounce_addresses=BounceAddresses(settings.secret_keys),
        unsubscribe_domain=settings.unsubscribe_domain,
        mailto=MailtoAddresses(settings.secret_keys),
    )


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


def _process_main(settings: Settings, conn: Connection) -> None:
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
        msgspec.msgpack.Decoder(list[JobFrame | WithdrawFrame]).decode,
        OUTCOME_LINGER_SECONDS,
        settings.smtp_connections,
    )
    jobs: asyncio.Queue[JobFrame] = asyncio.Queue()

    async def sender(mailer: Mailer) -> None:
        while True:
            job = await jobs.get()
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

    def withdraw(campaign: str) -> None:
        """Answer the queued jobs of ``campaign`` withdrawn, keeping the others in their order."""
        kept = []
        while not jobs.empty():
            job = jobs.get_nowait()
            if job.campaign == campaign:
                frames.put(AnswerFrame(job.seq, WITHDRAWN, "withdrawn before its transaction", time.time()))
            else:
                kept.append(job)
        for job in kept:
            jobs.put_nowait(job)

    mailers = smtp_mailers(settings)
    senders = [asyncio.create_task(sender(mailer)) for mailer in mailers for _ in range(SENDERS_PER_CONNECTION)]
    try:
        while True:
            try:
                for frame in await frames.read():
                    if isinstance(frame, WithdrawFrame):
                        withdraw(frame.campaign)
                    else:
                        jobs.put_nowait(frame)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the worker is gone: nobody is left to record an outcome
    finally:
        for task in senders:
            task.cancel()
        # A polite QUIT on each connection, if the relay answers at once.
        await asyncio.wait([asyncio.ensure_future(mailer.close()) for mailer in mailers], timeout=QUIT_SECONDS)


class Courier:
    """The worker's side: hands requests to the delivery process and waits for their outcomes."""

    def __init__(self, settings: Settings, on_exit: Callable[[], None] | None = None) -> None:
        """``on_exit`` is called each time the delivery process is found gone while the worker runs."""
        self._render = render_context(settings)
        self._on_exit = on_exit or (lambda: None)
        self._closing = False
        smtp_mailers(settings)  # a bad MAILPULSE_SMTP_URL or DKIM key stops the worker now, not its delivery process
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._window = asyncio.Semaphore(settings.smtp_connections * QUEUED_PER_CONNECTION)
        self._process: SpawnProcess | None = None
        self._frames: Frames | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[AnswerFrame]] = {}
        self._seq = 0
        self._starting = asyncio.Lock()

    def _running(self) -> Frames | None:
        if self._frames is not None and self._reading is not None and not self._reading.done():
            return self._frames
        return None

    async def _started(self) -> Frames:
        async with self._starting:
            running = self._running()
            if running is not None:
                return running
            ours, theirs = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=_process_main, args=(self.settings, theirs), daemon=True, name="mailpulse-delivery"
            )
            process.start()
            theirs.close()
            reader, writer = await stream_pair(ours)
            self._process = process
            self._frames = Frames(reader, writer, msgspec.msgpack.Decoder(list[AnswerFrame]).decode)
            self._reading = asyncio.create_task(self._read(self._frames))
            connections = self.settings.smtp_connections
            log.info("delivery process %d started with %d SMTP connections", process.pid, connections)
            return self._frames

    async def _read(self, frames: Frames) -> None:
        try:
            while True:
                for outcome in await frames.read():
                    future = self._waiting.pop(outcome.seq, None)
                    if future is not None and not future.done():
                        future.set_result(outcome)
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError) as exc:
            if not self._closing:
                exitcode = self._process.exitcode if self._process is not None else None
                log.error("delivery process gone (exit %s): %s", exitcode, exc)
                self._on_exit()
        finally:
            frames.writer.close()
            waiting, self._waiting = self._waiting, {}
            for future in waiting.values():
                if not future.done():
                    future.set_exception(CourierError("the delivery process exited with this message in it"))

    async def start(self) -> None:
        """Spawn the delivery process now (the first request would otherwise)."""
        await self._started()

    async def deliver(self, request: SendRequest, still_barred: Callable[[], list[str]]) -> DeliveryResult:
        """Send ``request`` unless ``still_barred()``, asked once there is room, names a reason not to."""
        async with self._window:
            frames = self._running() or await self._started()
            barred = still_barred()
            if barred:
                return DeliveryResult(barred, utcnow())
            try:
                rendered = render_message(request, self._render)
            except RenderError as exc:  # refused at intake; a request from elsewhere is skipped, not fatal
                return DeliveryResult([f"unrenderable: {exc}"], utcnow())
            self._seq += 1
            future: asyncio.Future[AnswerFrame] = asyncio.get_running_loop().create_future()
            self._waiting[self._seq] = future
            job = JobFrame(self._seq, rendered.envelope_from, rendered.recipient, rendered.data, request.campaign_id)
            frames.put(job)
            outcome = await future
        if outcome.code == WITHDRAWN:
            return DeliveryResult([WITHDRAWN_REASON], datetime.fromtimestamp(outcome.answered_at, UTC))
        answer = SmtpOutcome(outcome.code, outcome.reply, SmtpStage(outcome.stage), outcome.after_content)
        return DeliveryResult(answer, datetime.fromtimestamp(outcome.answered_at, UTC))

    def withdraw(self, campaign: str) -> None:
        """Take back the messages of ``campaign`` the delivery process has not begun to send (its campaign
        was paused or cancelled): their deliveries return :data:`processors.delivery.WITHDRAWN_REASON`."""
        frames = self._running()
        if frames is not None:
            frames.put(WithdrawFrame(campaign))
            frames.flush()

    def in_flight(self) -> int:
        """Messages handed over whose outcome has not come back."""
        return len(self._waiting)

    async def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        if self._frames is not None:
            self._frames.writer.close()
        if self._reading is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._process.join, timeout)
            if self._process.is_alive():
                self._process.kill()
