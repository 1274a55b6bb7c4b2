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
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess

import msgspec

from processors.caught_up import EVENTS_BEHIND
from processors.delivery import WITHDRAWN_REASON, DeliveryResult, SmtpOutcome
from processors.delivery_process import (
    RECHECK,
    WITHDRAWN,
    AnswerFrame,
    JobFrame,
    RecheckFrame,
    WithdrawFrame,
    process_main,
    smtp_mailers,
)
from processors.frames import Frames, stream_pair
from processors.render import RenderContext, RenderError, render_message
from schemas.attribution import BounceAddresses
from schemas.bounce_reasons import SmtpStage
from schemas.events import SendRequest, utcnow
from schemas.keys import normalize_address
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
                target=process_main, args=(self.settings, theirs), daemon=True, name="mailpulse-delivery"
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

    async def deliver(
        self,
        request: SendRequest,
        still_barred: Callable[[], list[str]],
        partition: int = -1,
        begin_by: Callable[[], float] | None = None,
        again: bool = False,
    ) -> DeliveryResult:
        """Send ``request`` unless ``still_barred()``, asked once there is room, names a reason not to.
        ``begin_by()``, asked at the same moment, is the latest ``time.monotonic()`` its transaction may begin
        at: that check is too old afterwards. :data:`processors.caught_up.EVENTS_BEHIND`: given back, by
        :meth:`recheck` or for waiting past ``begin_by``, before it went out; handed over ``again``, it goes
        before the messages that have not waited."""
        async with self._window:
            frames = self._running() or await self._started()
            barred = still_barred()
            if barred:
                return DeliveryResult(barred, utcnow())
            deadline = begin_by() if begin_by is not None else 0.0
            try:
                rendered = render_message(request, self._render)
            except RenderError as exc:  # refused at intake; a request from elsewhere is skipped, not fatal
                return DeliveryResult([f"unrenderable: {exc}"], utcnow())
            self._seq += 1
            future: asyncio.Future[AnswerFrame] = asyncio.get_running_loop().create_future()
            self._waiting[self._seq] = future
            job = JobFrame(
                self._seq,
                rendered.envelope_from,
                rendered.recipient,
                rendered.data,
                request.campaign_id,
                partition,
                deadline,
                again,
            )
            frames.put(job)
            outcome = await future
        if outcome.code == RECHECK:
            return DeliveryResult([EVENTS_BEHIND], datetime.fromtimestamp(outcome.answered_at, UTC))
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

    def recheck(self, *, recipient: str = "", partition: int = -1) -> None:
        """Give back the messages to ``recipient`` (normalized), or of ``partition``, not begun yet: a
        suppression was applied, or the partition's events fell behind, since they were handed over. What
        waits in the delivery process (a second or more when the machine is starved) is then never mailed
        past an unsubscribe."""
        frames = self._running()
        if frames is not None:
            frames.put(RecheckFrame(normalize_address(recipient), partition))
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
