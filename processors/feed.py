"""What a feed reads and whom it answers to: its records, its host, its handlers' view of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from confluent_kafka import Message


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

    def rest(self, partition: int, offset: int, seconds: float) -> None: ...


# Handles one batch (in partition order) and returns, per partition, the next offset to commit.
# A handler that stops early in a partition calls ``feed.rest`` for the rest of it.
Handler = Callable[[FeedControl, list[FeedRecord]], Awaitable[dict[int, int]]]
# The offset to read a newly assigned partition from, as the tables know it; None: the committed one.
ResumeFrom = Callable[[int], int | None]
