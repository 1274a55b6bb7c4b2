"""Worker table writes reach their stores only once acknowledged; the worker reads its pending writes meanwhile.

The producer here points at a closed port: nothing is delivered, and ``_apply`` stands in for the
acknowledgement a real flush waits for (the broker round trip is covered by the recovery tests). With a
short delivery timeout the same producer shows what a refusal does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from processors.output import Output, OutputError
from schemas.settings import Settings


class FakeStore(dict[str, str]):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[Any, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


@dataclass
class FakeChangelog:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class FakeTable:
    name: str
    data: FakeStore = field(default_factory=FakeStore)

    @property
    def changelog_topic(self) -> FakeChangelog:
        return FakeChangelog(f"{self.name}-changelog")

    def get(self, key: str) -> str | None:
        return self.data.get(key)


@dataclass
class FakeMessage:
    partition: int
    offset: int = 0
    topic: str = "events"
    value: bytes = b"x"


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage


# Nobody listens there: librdkafka's connection errors would only fill the test output.
QUIET = {"log_level": 0}


def output() -> Output:
    return Output(Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), **QUIET)


def test_a_write_is_read_back_before_it_reaches_the_store() -> None:
    out, table, source = output(), FakeTable("suppression"), FakeEvent(FakeMessage(2))
    out.write(table, "a@example.com", "unsubscribed", source)
    assert out.read(table, "a@example.com", source) == "unsubscribed"
    assert "a@example.com" not in table.data  # not acknowledged yet: a crash now must not leave it locally


def test_a_view_sees_what_the_feeds_see_acknowledged_or_not() -> None:
    out, table = output(), FakeTable("suppression")
    table.data["old@example.com"] = "stored"
    out.write(table, "new@example.com", "unsubscribed", FakeEvent(FakeMessage(3)))
    assert out.current(table, "new@example.com") == "unsubscribed"  # what the sender's gate reads now
    assert out.current(table, "old@example.com") == "stored"
    assert out.current(table, "nobody@example.com") is None


def test_acknowledged_writes_reach_the_store_in_order_with_their_offsets() -> None:
    out, table = output(), FakeTable("engagement")
    out.write(table, "k", "first", FakeEvent(FakeMessage(1)))
    out.write(table, "k", "second", FakeEvent(FakeMessage(1)))
    out._offsets.update({1: 40, 2: 41})
    out._apply(out._seq)
    assert table.data["k"] == "second"
    assert list(table.data.persisted.values()) == [41]
    assert out.read(table, "k", FakeEvent(FakeMessage(1))) == "second"  # now from the store


def test_a_write_made_during_a_flush_stays_pending_and_wins() -> None:
    out, table = output(), FakeTable("sent-log")
    out.write(table, "m1", "pending", FakeEvent(FakeMessage(0)))
    upto = out._seq  # the flush starts here
    out.write(table, "m1", "sent:2026-11-27T00:00:00Z", FakeEvent(FakeMessage(0)))
    out._offsets.update({1: 7})
    out._apply(upto)
    assert table.data["m1"] == "pending"  # the acknowledged value only
    assert out.read(table, "m1", FakeEvent(FakeMessage(0))) == "sent:2026-11-27T00:00:00Z"
    assert list(table.data.persisted.values()) == [7]  # never past what the store holds


def test_a_refusal_drops_every_pending_write_and_fails_each_batch_in_flight() -> None:
    # librdkafka gives up on each record after 200 ms: the broker "refused" them.
    out = Output(
        Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), **{"message.timeout.ms": 200, **QUIET}
    )
    table, source = FakeTable("engagement"), FakeEvent(FakeMessage(0, offset=5))
    table.data["o|0"] = "5"  # the durable mark: partition 0 resumes at offset 5

    async def batches() -> None:
        other = out.begin()  # another feed's batch, still open
        out.write(table, "b", "written by the other batch", source)
        mine = out.begin()
        out.write(table, "k", "counts", source)
        out.write(table, "o|0", "9", source)
        with pytest.raises(OutputError, match="not acknowledged"):
            await out.flush(mine)
        # Read again from the durable mark, the batch finds none of its own writes.
        assert out.read(table, "o|0", source) == "5"
        assert out.read(table, "k", source) is None and "k" not in table.data
        # The other batch's write was dropped too, so its flush fails although its records caused nothing.
        assert out.read(table, "b", source) is None
        with pytest.raises(OutputError, match="dropped"):
            await out.flush(other)
        later = out.begin()  # a batch begun after the refusal is not failed by it
        await out.flush(later)

    asyncio.run(batches())
    assert dict(table.data) == {"o|0": "5"}


def test_a_flush_waits_for_what_came_before_it_and_not_for_what_comes_after() -> None:
    from processors.output import Acknowledgements

    async def run() -> None:
        loop = asyncio.get_running_loop()
        acks = Acknowledgements()
        first = [acks.produced(), acks.produced()]  # a batch's two records
        first_flush = acks.close(loop)
        second = acks.produced()  # another feed's record, produced while the first flush waits
        second_flush = acks.close(loop)
        later = acks.produced()  # produced all the time by a busy sender: never waited for by the flushes above
        acks.reported(second)
        await asyncio.sleep(0)
        assert not first_flush.done() and not second_flush.done()  # the second waits for the first's records
        for epoch in first:
            acks.reported(epoch)
        await asyncio.wait_for(asyncio.gather(first_flush, second_flush), 1)
        third_flush = acks.close(loop)
        await asyncio.sleep(0)
        assert not third_flush.done()
        acks.reported(later)  # reports may come from another thread: the waiter is woken on its loop
        await asyncio.wait_for(third_flush, 1)
        await asyncio.wait_for(acks.close(loop), 1)  # an empty epoch settles at once

    asyncio.run(run())
