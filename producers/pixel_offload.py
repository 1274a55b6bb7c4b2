"""Open pixels: authenticate in the request, do the rest in a helper process.

A pixel answer depends only on whether its token is authentic (a 404
otherwise), so the request path checks the token's HMAC (hashlib, a couple of
microseconds) and queues the token's bytes, which key signed them, the user
agent, client ip and time. A helper process, on a core the request loop does
not need, decrypts what the request path authenticated, classifies, builds the
``open`` event and hands it to its own Kafka producer; a second one takes the
batches when the machine leaves the first no idle core (:class:`PixelOffload`).
Batches cross a pipe every few milliseconds. Nothing here ever blocks the request loop, which unsubscribes and
webhooks share: a batch that does not fit in the pipe (the helper is behind, or
stuck) is shed and counted, as are opens the helper's full queue to Kafka sheds
and opens Kafka did not acknowledge in time. The pixel never waited for Kafka
anyway; what is queued when the helper dies is lost, as it would be in a
producer's memory. A helper that died, or a hand-off that failed, gets a new
helper; the flusher never stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import NamedTuple

from producers.publisher import KafkaPublisher
from producers.visits import open_event
from schemas.codec import encode
from schemas.events import Open
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.tokens import Authenticated, LinkKind, TokenCodec, TokenError, token_codec
from schemas.topics import Topics

log = logging.getLogger(__name__)

# An authenticated token's bytes and key index (schemas.tokens.Authenticated, a plain tuple in the pipe),
# user agent, client ip, unix time.
PixelHit = tuple[bytes, int, str, str, float]
# Fewer, larger hand-offs cost the request loop less (each is a pickle, a write and a wake-up of the
# helper); the pixel has already been answered, so the wait only delays the event by milliseconds.
FLUSH_SECONDS = 0.02
MAX_BATCH = 2048
# Room in the pipe for a few batches, so a hand-off rarely waits for the helper to read.
PIPE_BYTES = 1 << 20
# The helper's work can wait a few milliseconds; the request loop's cannot. On a busy machine the
# request loop was preempted thousands of times a second by processes waking up, the helper among them.
HELPER_NICENESS = 10
# Unread batches (each FLUSH_SECONDS of opens) past which the idle helper counts as starved.
BEHIND_BATCHES = 2


PAGE = 4096


def _pages(size: int) -> int:
    """Pages a message of ``size`` bytes may take in a pipe: its own, a partial one before, the header's."""
    return -(-size // PAGE) + 2


def _yield_to_requests() -> None:
    """Make this process (and the threads it starts later) give way to the request loop.

    SCHED_BATCH tells Linux the process is throughput work: its wake-ups no longer preempt a running
    request loop. The lower priority then gives the request loop the larger share of a contended core.
    """
    if hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)


def _only_when_idle() -> None:
    """Run this thread (the idle helper's Python loop) only on a core nobody else wants: a request loop
    waking up takes the core at once (a SCHED_BATCH thread keeps it for a few milliseconds more). Its
    Kafka producer's threads, started before, stay as they were, so opens already queued still go out."""
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def open_events(codec: TokenCodec, hits: Sequence[PixelHit], keep_full_ip: bool) -> list[Open | None]:
    """The open event of each pixel hit, or None where the token is not an open token."""
    opened = codec.open_all([Authenticated(data, key) for data, key, *_ in hits], LinkKind.OPEN)
    return [
        None
        if isinstance(claims, TokenError)
        else open_event(claims, user_agent, ip, datetime.fromtimestamp(when, UTC), keep_full_ip)
        for claims, (_, _, user_agent, ip, when) in zip(opened, hits, strict=True)
    ]


class HelperCounts(NamedTuple):
    """A helper's counters, in shared memory: it writes them, the edge reads them."""

    published: Synchronized[int]
    refused: Synchronized[int]
    shed: Synchronized[int]
    lost: Synchronized[int]
    taken: Synchronized[int]  # batches read: the edge counts what is still in the pipe by this


def _helper_main(settings: Settings, conn: Connection, counts: HelperCounts, idle: bool) -> None:
    _yield_to_requests()
    codec = token_codec(settings)
    topic = Topics.for_prefix(settings.topic_prefix).events

    def delivered(ok: bool) -> None:
        if not ok:
            counts.lost.value += 1

    def shedding() -> None:
        counts.shed.value += 1

    publisher = KafkaPublisher(settings, delivered, on_shed=shedding, shed_when_full=True)
    if idle:
        _only_when_idle()
    try:
        while True:
            try:
                batch: list[PixelHit] = pickle.loads(conn.recv_bytes())
            except EOFError:
                break
            counts.taken.value += 1
            done = not_opens = 0
            try:
                for event in open_events(codec, batch, settings.keep_full_ip):
                    if event is None:
                        not_opens += 1
                        continue
                    publisher.publish(topic, recipient_key(event.recipient, event.campaign_id), encode(event))
                    done += 1
            finally:  # counted once a batch: a shared counter costs as much as a tenth of an open
                counts.published.value += done
                counts.refused.value += not_opens
    finally:
        publisher.close()


class _Helper:
    """One helper process and the pipe to it."""

    def __init__(self, context: SpawnContext, settings: Settings, idle: bool) -> None:
        self.settings, self.idle, self._context = settings, idle, context
        self.counts = HelperCounts(*(context.Value("Q", 0, lock=False) for _ in HelperCounts._fields))
        self.process: SpawnProcess | None = None
        self._conn: Connection | None = None
        self._capacity = 0  # the pipe's, in pages
        self._in_pipe: deque[int] = deque()  # pages each batch sent and not yet read may hold
        self._sent = 0

    def spawn(self) -> None:
        self.counts.taken.value, self._sent = 0, 0
        self._in_pipe.clear()
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_helper_main,
            args=(self.settings, receive, self.counts, self.idle),
            daemon=True,
            name="mailpulse-pixel-helper" if self.idle else "mailpulse-pixel-overflow",
        )
        process.start()
        receive.close()
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default size stays
            fcntl.fcntl(send.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._capacity = fcntl.fcntl(send.fileno(), fcntl.F_GETPIPE_SZ) // PAGE
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self.process, self._conn = process, send

    def respawn_if_dead(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        log.error("pixel helper died (exit %s); starting a new one", self.process.exitcode if self.process else None)
        self.spawn()

    def unread(self) -> int:
        """Batches sent that it has not read yet."""
        return self._sent - self.counts.taken.value

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes go into the pipe without blocking.

        A pipe holds pages, not bytes: a write may start a page of its own, so each batch is counted
        as the pages it may take (its length header included), and a batch counts until the helper
        says it read it.
        """
        unread = self.unread()
        while len(self._in_pipe) > unread:
            self._in_pipe.popleft()
        return sum(self._in_pipe) + _pages(size) <= self._capacity

    def send(self, payload: bytes) -> None:
        assert self._conn is not None
        self._conn.send_bytes(payload)
        self._in_pipe.append(_pages(len(payload)))
        self._sent += 1

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.kill()

    async def stop(self, timeout: float) -> None:
        if self._conn is not None:
            self._conn.close()
        if self.process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.process.join, timeout)
            if self.process.is_alive():
                self.process.kill()


class PixelOffload:
    """Owned by the public app's lifespan: the queue, the flusher task and the two helper processes.

    The first helper's loop runs only on an idle core (:func:`_only_when_idle`): a pixel request never
    waits for it. Measured with wrk on two cores, the edge answered 33,000-35,000 pixels a second beside
    a SCHED_BATCH helper and 38,800-40,900 beside the same helper on SCHED_IDLE. A machine with no idle
    core would starve that helper, and its opens would be shed; so once it has more than
    :data:`BEHIND_BATCHES` batches unread, the batches go to the second, overflow helper, which runs as
    the single helper did before (SCHED_BATCH, niceness 10), until the first catches up. Linux lets no
    unprivileged thread leave SCHED_IDLE, hence a second process rather than one that changes its policy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        context = multiprocessing.get_context("spawn")
        self._helpers = (_Helper(context, settings, idle=True), _Helper(context, settings, idle=False))
        self.shed = context.Value("Q", 0, lock=False)  # batches that fitted no pipe, in opens
        self.overflowed = 0  # batches the overflow helper took
        self._pending: list[PixelHit] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def helper_pids(self) -> list[int]:
        return [h.process.pid for h in self._helpers if h.process is not None and h.process.pid is not None]

    async def start(self) -> None:
        for helper in self._helpers:
            helper.spawn()
        self._flusher = asyncio.create_task(self._flush_loop())

    def submit(self, hit: PixelHit) -> None:
        self._pending.append(hit)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def flush(self) -> None:
        """Hand the opens queued to a helper now (the flusher does every FLUSH_SECONDS)."""
        if not self._pending:
            return
        for helper in self._helpers:
            helper.respawn_if_dead()
        batch, self._pending = self._pending, []
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        first, overflow = self._helpers
        # A write that does not fit would block the request loop until a helper reads: shed instead.
        if first.unread() <= BEHIND_BATCHES and first.fits(len(payload)):
            first.send(payload)
        elif overflow.fits(len(payload)):
            overflow.send(payload)
            self.overflowed += 1
        else:
            self.shed.value += len(batch)
            log.warning("pixel helpers are behind: %d opens shed", len(batch))

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                # One failed hand-off (a helper gone mid-write, say) must not stop forwarding for good.
                log.exception("handing opens to a pixel helper failed; starting new helpers")
                for helper in self._helpers:
                    helper.kill()
                    helper.spawn()

    async def stop(self, timeout: float) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.flush()
        await asyncio.gather(*(helper.stop(timeout) for helper in self._helpers))

    def counts(self) -> dict[str, int]:
        """Both helpers' counters summed (the edge's own sheds included), and the batches overflowed."""
        helpers = [h.counts for h in self._helpers]
        return {
            "published": sum(int(c.published.value) for c in helpers),
            "refused": sum(int(c.refused.value) for c in helpers),
            "shed": int(self.shed.value) + sum(int(c.shed.value) for c in helpers),
            "lost": sum(int(c.lost.value) for c in helpers),
            "overflowed": self.overflowed,
        }
