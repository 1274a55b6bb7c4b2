from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from producers.pixel_offload import BEHIND_BATCHES, FLUSH_SECONDS, HELPER_NICENESS, PixelOffload
from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec

# Nothing listens on port 1: the helpers' producers only try to connect, and queue what they are given.
SETTINGS = Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MAILPULSE_SECRET_KEYS": "k"})
linux_scheduling = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")


async def _settled(offload: PixelOffload) -> list[int]:
    """The helpers' pids once each has set its own policy (until then it has its parent's)."""
    pids = offload.helper_pids
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.sched_getscheduler(pids[0]) == os.SCHED_IDLE and os.sched_getscheduler(pids[1]) == os.SCHED_BATCH:
            break
        await asyncio.sleep(0.05)
    return pids


@linux_scheduling
def test_the_helpers_give_way_to_the_request_loop() -> None:
    """The first helper's loop runs on idle cores only; the overflow helper as throughput work, niceness 10."""

    async def scheduling() -> tuple[list[int], int]:
        offload = PixelOffload(SETTINGS)
        await offload.start()
        try:
            pids = await _settled(offload)
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            return [os.sched_getscheduler(pid) for pid in pids], os.getpriority(os.PRIO_PROCESS, pids[1]) - mine
        finally:
            await offload.stop(timeout=5)

    policies, niceness = asyncio.run(scheduling())
    assert policies == [os.SCHED_IDLE, os.SCHED_BATCH]
    assert niceness == min(HELPER_NICENESS, 19 - os.getpriority(os.PRIO_PROCESS, 0))


@linux_scheduling
def test_a_starved_idle_helper_hands_its_batches_to_the_overflow_helper_and_no_open_is_shed() -> None:
    """A machine with no idle core never runs the first helper (stopped here): past a few unread batches
    the overflow helper takes them, and every open is published but those the first one holds."""
    codec = TokenCodec(SETTINGS.secret_keys)
    authenticated = codec.authenticate(codec.mint(TokenClaims(LinkKind.OPEN, "m", "c", "news", "r@example.org")))
    assert authenticated is not None
    hit = (authenticated.data, authenticated.key, "Mozilla/5.0", "203.0.113.9", time.time())

    async def run() -> tuple[dict[str, int], int]:
        offload = PixelOffload(SETTINGS)
        await offload.start()
        try:
            idle, _ = await _settled(offload)
            os.kill(idle, signal.SIGSTOP)
            batches = BEHIND_BATCHES + 8
            for _ in range(batches):
                for _ in range(100):
                    offload.submit(hit)
                offload.flush()  # one batch each
                await asyncio.sleep(FLUSH_SECONDS)
            deadline = time.monotonic() + 30
            while offload.counts()["published"] < 100 * (batches - BEHIND_BATCHES - 1) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            counts = offload.counts()
            os.kill(idle, signal.SIGCONT)
            return counts, batches
        finally:
            await offload.stop(timeout=5)

    counts, batches = asyncio.run(run())
    assert counts["shed"] == 0
    assert counts["overflowed"] == batches - BEHIND_BATCHES - 1  # the idle one took the first three
    assert counts["published"] == 100 * counts["overflowed"]
