from __future__ import annotations

import asyncio
import os
import time

import pytest

from producers.pixel_offload import HELPER_NICENESS, PixelOffload
from schemas.settings import Settings


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_the_helper_gives_way_to_the_request_loop() -> None:
    # Nothing listens on port 1: the helper's producer only tries to connect, which is all this needs.
    settings = Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MAILPULSE_SECRET_KEYS": "k"})

    async def scheduling() -> tuple[int, int]:
        offload = PixelOffload(settings)
        await offload.start()
        try:
            pid = offload._process.pid if offload._process else None
            assert pid is not None
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            deadline = time.monotonic() + 30
            # The helper sets its own policy once it runs; until then it has its parent's.
            while os.sched_getscheduler(pid) != os.SCHED_BATCH and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid) - mine
        finally:
            await offload.stop(timeout=5)

    policy, niceness = asyncio.run(scheduling())
    assert policy == os.SCHED_BATCH
    assert niceness == min(HELPER_NICENESS, 19 - os.getpriority(os.PRIO_PROCESS, 0))
