"""The edges' HTTP servers: both apps in one process and one event loop, on granian or uvicorn.

granian (Rust, hyper) is the default: a bare Starlette route served 32,600-33,700 req/s on it here
against 17,000-22,300 on uvicorn (alternated runs), and the pixel is mostly server. It runs embedded, in
this process's loop, so the apps' lifespans, the pixel helper and the bounce receiver live as they do
under uvicorn. ``MAILPULSE_EDGE_SERVER=uvicorn`` keeps uvicorn with its bounded httptools protocol.
Either way SIGTERM and SIGINT stop accepting, let requests in progress finish, then run the lifespans'
shutdown (which flushes what was answered to Kafka).
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from producers.bounded_http import BoundedHttpToolsProtocol
from producers.head_limit import HeadLimit
from schemas.settings import Settings


@dataclass(frozen=True)
class Listener:
    app: ASGIApp
    host: str
    port: int


# granian's own handlers print plain lines to stdout; through the root logger they are the edge's JSON lines.
_LOGS_THROUGH_OURS = {
    "loggers": {name: {"handlers": [], "propagate": True} for name in ("_granian", "granian.access")},
}


def run_edges(settings: Settings, listeners: list[Listener]) -> None:
    """Serve every listener until SIGTERM or SIGINT."""
    if settings.edge_server == "granian":
        import uvloop

        uvloop.run(_granian(settings, listeners))
    else:
        asyncio.run(_uvicorn(settings, listeners))


async def _uvicorn(settings: Settings, listeners: list[Listener]) -> None:
    protocol = BoundedHttpToolsProtocol.bounded(settings.max_head_bytes)
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                listener.app,
                host=listener.host,
                port=listener.port,
                log_level="warning",
                access_log=False,
                server_header=False,
                http=protocol,
            )
        )
        for listener in listeners
    ]
    await asyncio.gather(*(server.serve() for server in servers))


async def _granian(settings: Settings, listeners: list[Listener]) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    servers = [
        Server(
            HeadLimit(listener.app, settings.max_head_bytes),
            address=listener.host,
            port=listener.port,
            interface=Interfaces.ASGI,  # with the lifespan protocol
            http=HTTPModes.http1,
            websockets=False,
            # hyper stops reading a head past this (431); the exact bound is HeadLimit's.
            http1_settings=HTTP1Settings(max_buffer_size=max(64 * 1024, settings.max_head_bytes * 2)),
            backlog=1024,
            log_level=LogLevels.warning,
            log_dictconfig=_LOGS_THROUGH_OURS,
        )
        for listener in listeners
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    await asyncio.gather(*(server.serve() for server in servers))
