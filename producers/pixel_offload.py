"""Open pixels: authenticate in the request, do the rest in a helper process.

A pixel answer depends only on whether its token is authentic (a 404
otherwise), so the request path checks the token's HMAC (hashlib, a couple of
microseconds) and queues the token's bytes, which key signed them, the user
agent, client ip and time. A helper process, on the other core, decrypts what
the request path authenticated, classifies, builds the ``open`` event and hands
it to its own Kafka producer. Batches cross a pipe every few
milliseconds. Nothing here ever blocks the request loop, which unsubscribes and
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
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized

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


def open_event_for_hit(codec: TokenCodec, hit: PixelHit, keep_full_ip: bool) -> Open | None:
    """The open event for one pixel hit, or None when the token is not an open token."""
    data, key, user_agent, ip, when = hit
    try:
        claims = codec.open(Authenticated(data, key), LinkKind.OPEN)
    except TokenError:
        return None
    return open_event(claims, user_agent, ip, datetime.fromtimestamp(when, UTC), keep_full_ip)


def _helper_main(
    settings: Settings,
    conn: Connection,
    published: Synchronized[int],
    refused: Synchronized[int],
    shed: Synchronized[int],
    lost: Synchronized[int],
    taken: Synchronized[int],
) -> None:
    _yield_to_requests()
    codec = token_codec(settings)
    topic = Topics.for_prefix(settings.topic_prefix).events

    def delivered(ok: bool) -> None:
        if not ok:
            lost.value += 1

    def shedding() -> None:
        shed.value += 1

    publisher = KafkaPublisher(settings, delivered, on_shed=shedding, shed_when_full=True)
    try:
        while True:
            try:
                batch: list[PixelHit] = pickle.loads(conn.recv_bytes())
            except EOFError:
                break
            taken.value += 1  # the request side counts what is still in the pipe by this
            for hit in batch:
                event = open_event_for_hit(codec, hit, settings.keep_full_ip)
                if event is None:
                    refused.value += 1
                    continue
                publisher.publish(topic, recipient_key(event.recipient, event.campaign_id), encode(event))
                published.value += 1
    finally:
        publisher.close()


class PixelOffload:
    """Owned by the public app's lifespan: the queue, the flusher task and the helper process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self.published = self._context.Value("Q", 0, lock=False)
        self.refused = self._context.Value("Q", 0, lock=False)
        self.shed = self._context.Value("Q", 0, lock=False)  # the helper's and this side's
        self.lost = self._context.Value("Q", 0, lock=False)
        self.taken = self._context.Value("Q", 0, lock=False)  # batches the helper read
        self._capacity = 0  # the pipe's, in pages
        self._in_pipe: deque[int] = deque()  # pages each batch sent and not yet read may hold
        self._sent = 0
        self._pending: list[PixelHit] = []
        self._process: SpawnProcess | None = None
        self._conn: Connection | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _spawn(self) -> None:
        self.taken.value, self._sent = 0, 0
        self._in_pipe.clear()
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_helper_main,
            args=(self.settings, receive, self.published, self.refused, self.shed, self.lost, self.taken),
            daemon=True,
            name="mailpulse-pixel-helper",
        )
        process.start()
        receive.close()
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default size stays
            fcntl.fcntl(send.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._capacity = fcntl.fcntl(send.fileno(), fcntl.F_GETPIPE_SZ) // PAGE
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._process, self._conn = process, send

    def _fits(self, size: int) -> bool:
        """Whether ``size`` more bytes go into the pipe without blocking.

        A pipe holds pages, not bytes: a write may start a page of its own, so each batch is counted
        as the pages it may take (its length header included), and a batch counts until the helper
        says it read it.
        """
        unread = self._sent - self.taken.value
        while len(self._in_pipe) > unread:
            self._in_pipe.popleft()
        return sum(self._in_pipe) + _pages(size) <= self._capacity

    async def start(self) -> None:
        self._spawn()
        self._flusher = asyncio.create_task(self._flush_loop())

    def submit(self, hit: PixelHit) -> None:
        self._pending.append(hit)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def _send(self) -> None:
        if not self._pending:
            return
        if self._process is None or not self._process.is_alive():
            log.error(
                "pixel helper died (exit %s); starting a new one", self._process.exitcode if self._process else None
            )
            self._spawn()
        batch, self._pending = self._pending, []
        assert self._conn is not None
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        # A write that does not fit would block the request loop until the helper reads: shed instead.
        if not self._fits(len(payload)):
            self.shed.value += len(batch)
            log.warning("pixel helper is behind: %d opens shed", len(batch))
            return
        self._conn.send_bytes(payload)
        self._in_pipe.append(_pages(len(payload)))
        self._sent += 1

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            try:
                self._send()
            except Exception:
                # One failed hand-off (the helper gone mid-write, say) must not stop forwarding for good.
                log.exception("handing opens to the pixel helper failed; starting a new helper")
                with contextlib.suppress(Exception):
                    if self._process is not None:
                        self._process.kill()
                self._spawn()

    async def stop(self, timeout: float) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._send()
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._process.join, timeout)
            if self._process.is_alive():
                self._process.kill()

    def counts(self) -> dict[str, int]:
        return {
            "published": int(self.published.value),
            "refused": int(self.refused.value),
            "shed": int(self.shed.value),
            "lost": int(self.lost.value),
        }
