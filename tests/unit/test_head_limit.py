"""The head bound the granian edge runs behind: 431 before the app for a head over the limit, as uvicorn's
bounded protocol answers (tests/unit/test_bounded_http.py)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from producers.head_limit import HeadLimit, head_size


def scope(headers: list[tuple[bytes, bytes]], path: bytes = b"/o/t.gif", query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "raw_path": path, "query_string": query, "headers": headers}


def call(limit: HeadLimit, request: dict[str, Any]) -> tuple[list[MutableMapping[str, Any]], bool]:
    sent: list[MutableMapping[str, Any]] = []
    reached = False

    async def app(s: Any, r: Any, send: Any) -> None:
        nonlocal reached
        reached = True

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    limit.app = app
    asyncio.run(limit(request, receive, send))
    return sent, reached


def test_a_head_over_the_limit_is_refused_with_431_before_the_app_runs() -> None:
    limit = HeadLimit(lambda s, r, send: None, max_bytes=32 * 1024)  # type: ignore[arg-type, return-value]
    sent, reached = call(limit, scope([(b"user-agent", b"UA"), (b"x-big", b"a" * 40_000)]))
    assert not reached and sent[0]["status"] == 431
    sent, reached = call(limit, scope([(b"user-agent", b"UA")], path=b"/o/" + b"t" * 33_000))
    assert not reached and sent[0]["status"] == 431


def test_a_head_within_the_limit_reaches_the_app_and_lifespan_passes_through() -> None:
    limit = HeadLimit(lambda s, r, send: None, max_bytes=32 * 1024)  # type: ignore[arg-type, return-value]
    headers = [(b"user-agent", b"Mozilla/5.0"), (b"x-forwarded", b"a" * 30_000)]
    assert head_size(scope(headers)) < 32 * 1024
    sent, reached = call(limit, scope(headers))
    assert reached and sent == []
    sent, reached = call(limit, {"type": "lifespan"})
    assert reached and sent == []
