"""A faust agent that does nothing but count: the ceiling faust's consumer sets on this machine.

``python -m tests.bench.faust_baseline TOPIC COUNT`` reads COUNT records of TOPIC from the start with the
same consumer settings as the worker and prints ``RATE <events/s>`` from the first record to the last.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import faust

from schemas.settings import Settings


def main() -> None:
    topic_name, count = sys.argv[1], int(sys.argv[2])
    settings = Settings.from_env()
    app = faust.App(
        f"faust-baseline-{time.time_ns()}",
        broker=f"kafka://{settings.bootstrap_servers}",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-baseline-"),
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    state = {"read": 0, "first": 0.0}

    @app.agent(topic, concurrency=1)
    async def count_only(stream: Any) -> Any:
        async for taken in stream.take_events(settings.event_batch_size, within=0.05):
            state["first"] = state["first"] or time.monotonic()
            state["read"] += len(taken)
            if state["read"] >= count:
                print(f"RATE {count / (time.monotonic() - state['first'])}", flush=True)
                os._exit(0)  # the measurement is done; no graceful shutdown needed

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
