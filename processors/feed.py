"""What a feed reads and whom it answers to: its records, its host, its handlers' view of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import NamedTuple, Protocol

from confluent_kafka import Message

from processors.metrics import WorkerMetrics
from schemas.codec import DecodeError, decode_send_request
from schemas.events import SendRequest

log = logging.getLogger(__name__)


class FeedMessage(NamedTuple):
    """Where a record came from."""

    topic: str
    partition: int
    offset: int


class FeedRecord:
    """One record read. A slotted class: one is made per record, and a frozen dataclass cost a few times more."""

    __slots__ = ("message", "value")

    def __init__(self, message: FeedMessage, value: bytes) -> None:
        self.message = message
        self.value = value

    def __repr__(self) -> str:
        return f"FeedRecord({self.message!r})"

    @classmethod
    def of(cls, msg: Message) -> FeedRecord:
        return cls(FeedMessage(msg.topic() or "", msg.partition() or 0, msg.offset() or 0), msg.value() or b"")


class PrecedingBatchFailed(RuntimeError):
    """A handler stops: a batch read before its own failed, and both are read again."""


class FeedHost(Protocol):
    """Who assigns the feed its partitions and runs it (:class:`processors.faust_store.FaustHost`)."""

    @property
    def group_prefix(self) -> str: ...

    def assigned(self) -> frozenset[int]: ...

    def settling(self) -> bool: ...

    def on_rebalance(
        self,
        revoked: Callable[[], Awaitable[None]],
        assigned: Callable[[], Awaitable[None]],
        completed: Callable[[], Awaitable[None]],
    ) -> None: ...

    def task(self, run: Callable[[], Awaitable[None]]) -> None: ...


class FeedControl(Protocol):
    """What a handler may ask of the feed that called it."""

    def release(self) -> None: ...

    async def preceding(self) -> bool:
        """Wait for the batches read before this one; whether they were all handled and committed."""
        ...

    def rest(self, partition: int, offset: int, seconds: float) -> None: ...


class FeedProgress(Protocol):
    """Who follows how far a feed got (:class:`processors.caught_up.CaughtUp`)."""

    def assigned(self, starts: dict[int, int | None]) -> None: ...

    def applied(self, done: dict[int, int]) -> None: ...


# Handles one batch (in partition order) and returns, per partition, the next offset to commit.
# A handler that stops early in a partition calls ``feed.rest`` for the rest of it.
Handler = Callable[[FeedControl, list[FeedRecord]], Awaitable[dict[int, int]]]
# The offset to read a newly assigned partition from, as the tables know it; None: the committed one.
ResumeFrom = Callable[[int], int | None]


def send_requests(
    records: list[FeedRecord], topic: str, metrics: WorkerMetrics, done: dict[int, int], resting: set[int]
) -> Iterator[tuple[int, int, SendRequest]]:
    """(partition, offset, request) of each record of a feed of send requests (retries, held), in order.

    Records of a partition the handler has put to rest since (it adds to ``resting`` while it reads) are
    passed over; an undecodable one is counted, logged and marked done, so the feed moves past it.
    """
    for record in records:
        partition, offset = record.message.partition, record.message.offset
        if partition in resting:
            continue
        try:
            request = decode_send_request(record.value)
        except DecodeError as exc:
            metrics.poison.labels(topic).inc()
            log.warning("skipping undecodable %s request: %s", topic, exc)
            done[partition] = offset + 1
            continue
        yield partition, offset, request
