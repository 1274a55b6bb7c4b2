"""Worker table writes reach their stores only once acknowledged; the worker reads its pending writes meanwhile.

The producer keeps records in memory and answers when told (tests/support/memory_producer.py); the
broker round trip and a real refusal are covered by the recovery tests.
"""

from __future__ import annotations

import asyncio

import pytest

from processors.acknowledgements import Acknowledgements
from processors.output import Output, OutputError
from processors.store import DictStore
from processors.transaction import TransactionClosed, TransactionStatus
from schemas.settings import Settings
from tests.support.memory_producer import MemoryProducer


def output(held: bool = False) -> tuple[Output, MemoryProducer]:
    producer = MemoryProducer()
    producer.hold = held
    return Output(Settings.from_env({}), producer=producer), producer


def test_a_write_is_read_back_before_it_reaches_the_store() -> None:
    (out, _), store = output(held=True), DictStore[str]("suppression")
    out.write(store, "a@example.com", "unsubscribed", 2)
    assert out.read(store, "a@example.com", 2) == "unsubscribed"
    assert "a@example.com" not in store.data  # not acknowledged yet: a crash now must not leave it locally


def test_a_view_sees_what_the_feeds_see_acknowledged_or_not() -> None:
    (out, _), store = output(held=True), DictStore[str]("suppression")
    store.data["old@example.com"] = "stored"
    out.write(store, "new@example.com", "unsubscribed", 3)
    assert out.current(store, "new@example.com") == "unsubscribed"  # what the sender's gate reads now
    assert out.current(store, "old@example.com") == "stored"
    assert out.current(store, "nobody@example.com") is None


def test_acknowledged_writes_reach_the_store_in_order_with_their_changelog_offsets() -> None:
    (out, producer), store = output(), DictStore[str]("engagement")

    async def batch() -> TransactionStatus:
        tx = out.transaction()
        tx.write(store, "k", "first", 1)
        tx.write(store, "k", "second", 1)
        tx.write(store, "j", "other", 4)
        await tx.commit()
        return tx.status

    assert asyncio.run(batch()) is TransactionStatus.COMMITTED
    assert store.data == {"k": "second", "j": "other"}
    assert store.offsets == {1: 1, 4: 0}  # the last changelog offset of each partition the store holds
    assert out.read(store, "k", 1) == "second"  # now from the store
    # What faust would recover the table from: the same values.
    recovered = DictStore[str].recovered("engagement", store.changelog_topic, producer.changelog(store.changelog_topic))
    assert recovered.data == store.data


def test_a_write_made_during_a_commit_stays_pending_and_wins() -> None:
    (out, producer), store = output(held=True), DictStore[str]("sent-log")

    async def run() -> None:
        tx = out.transaction()
        tx.write(store, "m1", "pending", 0)
        committing = asyncio.ensure_future(tx.commit())
        await asyncio.sleep(0.01)
        assert tx.status is TransactionStatus.PREPARED
        with pytest.raises(TransactionClosed):
            tx.write(store, "m2", "late", 0)  # a prepared transaction takes nothing more
        out.write(store, "m1", "sent:2026-11-27T00:00:00Z", 0)  # the next batch's, while the commit waits
        producer.release()
        await asyncio.wait_for(committing, 2)

    asyncio.run(run())
    assert store.data["m1"] == "pending"  # the value acknowledged before the commit began, only
    assert out.read(store, "m1", 0) == "sent:2026-11-27T00:00:00Z"
    assert store.offsets == {0: 0}  # never past what the store holds


def test_a_refusal_drops_every_pending_write_and_fails_each_batch_with_writes_in_flight() -> None:
    (out, producer), store = output(held=True), DictStore[str]("engagement")
    store.data["o|0"] = "5"  # the durable mark: partition 0 resumes at offset 5
    producer.refuse(store.changelog_topic)

    async def batches() -> None:
        other = out.transaction()  # another feed's batch, still open
        other.write(store, "b", "written by the other batch", 0)
        outputs_only = out.transaction()  # a batch that only produces records (the retries)
        outputs_only.produce("mailpulse.outbox", b"k", b"v")
        mine = out.transaction()
        mine.write(store, "k", "counts", 0)
        mine.write(store, "o|0", "9", 0)
        producer.hold = False
        with pytest.raises(OutputError, match="not acknowledged"):
            await mine.commit()
        assert mine.status is TransactionStatus.DROPPED
        # Read again from the durable mark, the batch finds none of its own writes.
        assert out.read(store, "o|0", 0) == "5"
        assert out.read(store, "k", 0) is None and "k" not in store.data
        # The other batch's write was dropped too, so its commit fails although its records caused nothing.
        assert out.read(store, "b", 0) is None
        with pytest.raises(OutputError, match="dropped"):
            await other.commit()
        await outputs_only.commit()  # it wrote nothing that could be lost
        later = out.transaction()  # a batch begun after the refusal is not failed by it
        later.produce("mailpulse.outbox", b"k", b"v2")
        await later.commit()
        assert later.status is TransactionStatus.COMMITTED

    asyncio.run(batches())
    assert store.data == {"o|0": "5"}


def test_a_flush_waits_for_what_came_before_it_and_not_for_what_comes_after() -> None:
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
