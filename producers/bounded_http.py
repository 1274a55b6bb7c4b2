"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

uvicorn bounds the head only with h11 (``h11_max_incomplete_event_size``); with httptools, the parser the
edge runs for speed, a client can send one header of 20 MB, or ten thousand small ones, and uvicorn
buffers all of it and hands it to the app (measured: a 20 MB header answered 200). This subclass counts
what arrives from a request's first byte until its headers are complete and answers 431 and closes the
connection once the head passes ``max_head_bytes`` or ``max_headers``, before the app sees anything.
"""

from __future__ import annotations

import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from producers.head_limit import HEAD_TOO_LARGE, head_bytes

log = logging.getLogger(__name__)

MAX_HEADERS = 100


class HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    max_headers = MAX_HEADERS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    @classmethod
    def bounded(cls, max_head_bytes: int, max_headers: int = MAX_HEADERS) -> type[BoundedHttpToolsProtocol]:
        """This protocol with its limits, as uvicorn's ``http=`` takes a class."""
        return type("BoundedHttpTools", (cls,), {"max_head_bytes": max_head_bytes, "max_headers": max_headers})

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.max_headers:
            self._refused = True
            raise HeadTooLarge  # stops the parser before the app is started

    def on_headers_complete(self) -> None:
        # A whole head can arrive in one read (up to 256 KB): measured here, before the app starts.
        if head_bytes(len(self.url), self.headers) > self.max_head_bytes:
            self._refused = True
            raise HeadTooLarge
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:
                self._refuse()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # A head that has not ended yet, counted after feeding: a read holding a small head and a body is
        # not refused for the body.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refused = True
            self._refuse()

    def _refuse(self) -> None:
        reason = HEAD_TOO_LARGE
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(reason)).encode() + b"\r\nconnection: close\r\n\r\n" + reason
        )
        self.transport.close()
