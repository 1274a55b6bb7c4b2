"""The edge's HTTP protocol refuses an oversized head with 431 before the app runs, and takes the rest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from producers.bounded_http import BoundedHttpToolsProtocol
from tests.support.hostile_corpus import http_status
from tests.support.ports import free_port

CALLS: list[int] = []


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] != "http":
        return
    CALLS.append(1)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(str(len(body))))]}
    )
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    number = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=number, log_level="warning", http=BoundedHttpToolsProtocol.bounded(8192)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield number
    server.should_exit = True
    thread.join(10)


def request(head: bytes, body: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def test_an_oversized_header_is_431_and_never_reaches_the_app(port: int) -> None:
    CALLS.clear()
    assert http_status(port, request(b"X-Big: " + b"a" * 20_000_000 + b"\r\n")) == 431
    assert http_status(port, request(b"".join(b"X-%d: v\r\n" % n for n in range(101)))) == 431
    assert http_status(port, request(b"", b"").replace(b"POST / ", b"POST /" + b"u" * 10_000 + b" ")) == 431
    assert CALLS == []


def test_a_head_within_the_limits_and_a_large_body_in_one_chunk_are_served(port: int) -> None:
    CALLS.clear()
    assert http_status(port, request(b"".join(b"X-%d: v\r\n" % n for n in range(90)))) == 200
    assert http_status(port, request(b"X-Fine: " + b"a" * 7000 + b"\r\n", b"b" * 200_000)) == 200
    # Keep-alive: the second request's head is counted afresh.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        one = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 6000 + b"\r\n\r\n"
        sock.sendall(one + one.replace(b"GET", b"GET", 1).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        answers = b""
        while chunk := sock.recv(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200") == 2
    assert len(CALLS) == 4
