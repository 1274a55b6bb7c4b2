"""Length-prefixed msgpack frames over a socket pair: how the worker and its delivery process talk."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

_LENGTH = struct.Struct("!I")


class Frames:
    """Length-prefixed msgpack frames over a stream. Items put within ``linger`` seconds (or one loop
    turn) go as one frame: each write is a system call and a wake-up of the other side, which on a
    busy machine cost more than the items do."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decode: Callable[[bytes], list[Any]],
        linger: float = 0.0,
        most: int = 1 << 30,
    ) -> None:
        self.reader, self.writer, self._decode = reader, writer, decode
        self._linger, self._most = linger, most
        self._pending: list[msgspec.Struct] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._encoder = msgspec.msgpack.Encoder()

    def put(self, item: msgspec.Struct) -> None:
        self._pending.append(item)
        if len(self._pending) >= self._most:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._linger, self.flush) if self._linger else loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        if self.writer.is_closing():
            self._pending.clear()
            return
        frame = self._encoder.encode(self._pending)
        self._pending = []
        self.writer.write(_LENGTH.pack(len(frame)) + frame)

    async def read(self) -> list[Any]:
        (size,) = _LENGTH.unpack(await self.reader.readexactly(_LENGTH.size))
        return self._decode(await self.reader.readexactly(size))


async def stream_pair(conn: Connection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    return await asyncio.open_connection(sock=sock)
