"""A bound on a request's head (request line and headers) for servers that have no exact one.

granian (hyper) refuses more than 100 headers with 431 and stops buffering a head somewhere past its
``max_buffer_size``, but lets a head of 40 KB through to the app when given 32 KB (measured). This wraps
the whole app, the pixel's fast path included, and answers 431 like uvicorn's bounded protocol
(:mod:`producers.bounded_http`) before the app sees anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

HEAD_TOO_LARGE = b"request head too large"


def head_bytes(target: int, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """A head's bytes, counted alike on both servers: the target plus each ``name: value\\r\\n``."""
    return target + sum(len(name) + len(value) + 4 for name, value in headers)


def head_size(scope: Scope) -> int:
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return head_bytes(target, scope["headers"])


class HeadLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and head_size(scope) > self.max_bytes:
            headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": HEAD_TOO_LARGE})
            return
        await self.app(scope, receive, send)
