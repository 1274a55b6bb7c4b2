"""The sink process: owns the store, runs migrations, the consumer thread and the query API."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from schemas.settings import Settings
from sinks.consumer import TableSink, build_sinks, tune_gc_for_batches
from sinks.migrate import migrate
from sinks.query_api import create_query_app
from sinks.store import open_store

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    """Run until stopped; the exit status is 1 when a consumer stopped on an error it could not get past."""
    store = open_store(settings)
    migrate(store)
    sinks = build_sinks(settings, store)
    tune_gc_for_batches()
    crashed = threading.Event()

    def consume(sink: TableSink) -> None:
        try:
            sink.run()
        except Exception:
            # A sink that stopped consuming must not look healthy, nor stay up: end the process
            # with a failure status, for its supervisor to restart it.
            log.exception("sink consumer crashed; stopping the sink")
            crashed.set()
            server.should_exit = True

    def health() -> str | None:
        reasons = [reason for sink in sinks if (reason := sink.health()) is not None]
        return "; ".join(reasons) or None

    consumers = [
        threading.Thread(target=consume, args=(sink,), name=f"sink-{sink.mapping.table}", daemon=True) for sink in sinks
    ]
    app = create_query_app(store, settings, health)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.private_host, port=settings.sink_api_port, log_level="warning", access_log=False
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for consumer in consumers:
            consumer.start()
        log.info("sink consuming into %s", settings.clickhouse_url)
        try:
            yield
        finally:
            # Shut down the consumer first: it finishes its batch and commits.
            for sink in sinks:
                sink.signal_shutdown()
            for consumer in consumers:
                consumer.join(timeout=30)
            store.close()
            log.info("sink stopped")

    app.router.lifespan_context = lifespan
    server.run()
    return 1 if crashed.is_set() else 0
