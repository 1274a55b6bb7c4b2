"""Which records Kafka has answered for, counted by epoch, so that a batch waits for its own records only."""

from __future__ import annotations

import asyncio
import threading


class Acknowledgements:
    """Which records Kafka has answered for, by epoch: :meth:`close` ends the open epoch, and its future
    resolves once every record of it and of each epoch before it has its delivery report.

    librdkafka's own flush waits until nothing at all is in flight. The worker's feeds produce all the
    time (the sender an answer's sent mark and events as each answer comes), so a batch's flush waited
    for records produced after it began, up to hundreds of milliseconds while the sender ran; an
    unsubscribe's batch waited as long before its offsets could commit.

    ``produced`` is called on the event loop's thread (as is ``close``); ``reported`` on whichever thread
    serves the delivery reports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.epoch = 0  # the open epoch: what is produced now belongs to it
        self._produced: dict[int, int] = {0: 0}  # per epoch, final once the epoch is closed
        self._reported: dict[int, int] = {0: 0}
        self._settled_upto = -1  # every epoch up to this one has all its reports
        self._waiting: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def produced(self) -> int:
        """Count a record of the open epoch; its delivery report must call :meth:`reported` with the answer."""
        epoch = self.epoch
        self._produced[epoch] += 1
        return epoch

    def reported(self, epoch: int) -> None:
        with self._lock:
            self._reported[epoch] += 1
            if epoch < self.epoch:
                self._settle()

    def close(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """End the open epoch; the future resolves once it and every epoch before it are answered for."""
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            closing = self.epoch
            self.epoch += 1
            self._produced[self.epoch] = self._reported[self.epoch] = 0
            self._waiting.append((closing, loop, done))
            self._settle()
        return done

    def _settle(self) -> None:
        """With the lock held: move past every closed epoch answered for, and wake who waited for it."""
        upto = self._settled_upto
        while upto + 1 < self.epoch and self._reported[upto + 1] == self._produced[upto + 1]:
            upto += 1
            del self._reported[upto], self._produced[upto]
        if upto == self._settled_upto:
            return
        self._settled_upto = upto
        still = []
        for epoch, loop, done in self._waiting:
            if epoch <= upto:
                loop.call_soon_threadsafe(_resolve, done)
            else:
                still.append((epoch, loop, done))
        self._waiting = still


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
