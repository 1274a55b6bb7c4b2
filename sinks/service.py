"""The sink process: owns the store, runs migrations, the consumer thread and the query API."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from schemas.settings import Settings
from sinks.consumer import build_sink_processor
from sinks.migrate import migrate
from sinks.query_api import create_query_app
from sinks.store import EventStore

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    store = EventStore(settings.clickhouse_url)
    migrate(store)
    processor = build_sink_processor(settings, store)

    def consume() -> None:
        try:
            processor.run()
        except Exception:
            # A sink that stopped consuming must not look healthy: end the process.
            log.exception("sink consumer crashed; stopping the sink")
            os.kill(os.getpid(), signal.SIGTERM)

    consumer = threading.Thread(target=consume, name="sink-consumer", daemon=True)
    app = create_query_app(store, settings.api_keys)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        consumer.start()
        log.info("sink consuming into %s", settings.clickhouse_url)
        try:
            yield
        finally:
            # Shut down the consumer first: it finishes its batch and commits.
            processor.signal_shutdown()
            consumer.join(timeout=30)
            store.close()
            log.info("sink stopped")

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host="127.0.0.1", port=settings.sink_api_port, log_level="warning", access_log=False)
