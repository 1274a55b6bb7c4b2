"""A bound on a request's head (request line and headers) for servers that have no exact one.

granian (hyper) refuses more than 100 headers with 431 and stops buffering a head somewhere past its
``max_buffer_size``, but lets a head of 40 KB through to the app when given 32 KB (measured). This wraps
the whole app, the pixel's fast path included, and answers 431 like uvicorn's bounded protocol
(:mod:`producers.bounded_http`) before the app sees anything.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

TOO_LARGE_BODY = b"request head too large\n"


def head_size(scope: Scope) -> int:
    """The head's bytes as uvicorn's bounded protocol counts them: the target plus each ``name: value\\r\\n``."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return target + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class HeadLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and head_size(scope) > self.max_bytes:
            headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": TOO_LARGE_BODY})
            return
        await self.app(scope, receive, send)
