"""When the sender may hand a partition's mail off: its events applied up to a recently read high watermark."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest

from processors.caught_up import BEGIN_WITHIN_SECONDS, CAUGHT_UP_SECONDS, CaughtUp, Rebalancing


class Leaders:
    """Partition leaders answering the probe when the test says so (``answer``), or never (a paused one)."""

    def __init__(self) -> None:
        self.asked: dict[int, list[Future[tuple[int, int]]]] = {}
        self.refreshed = 0

    def ask(self, partition: int, timeout: float) -> Future[tuple[int, int]]:
        future: Future[tuple[int, int]] = Future()
        self.asked.setdefault(partition, []).append(future)
        return future

    def answer(self, partition: int, low: int, high: int) -> None:
        self.asked[partition].pop(0).set_result((low, high))

    def fail(self, partition: int) -> None:
        self.asked[partition].pop(0).set_exception(RuntimeError("leader not available"))

    def refresh(self) -> None:
        self.refreshed += 1

    def close(self) -> None:
        pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # the answers come back through call_soon_threadsafe


def test_a_partition_is_caught_up_once_its_events_are_applied_to_the_watermark_read_before() -> None:
    async def run() -> None:
        now = [100.0]
        leaders = Leaders()
        gate = CaughtUp(leaders, clock=lambda: now[0])
        gate.assigned({0: 40, 1: 7})
        assert not gate.fresh(0) and not gate.fresh(1)  # nothing known until a leader answers
        assert gate.begin_by(0) == float("-inf")  # a message checked now may not go out at all
        gate.probe()
        leaders.answer(0, 0, 40)  # nothing past the tables' mark: caught up as of the question
        leaders.answer(1, 0, 12)  # five events of partition 1 not applied yet
        await settle()
        assert gate.fresh(0) and not gate.fresh(1)
        # Its transaction may begin until a little after the watermark's question, whenever it is handed over.
        assert gate.begin_by(0) == pytest.approx(100.0 + BEGIN_WITHIN_SECONDS)
        gate.applied({1: 10})
        assert not gate.fresh(1)
        gate.applied({1: 12})
        assert gate.fresh(1)
        now[0] += CAUGHT_UP_SECONDS + 0.01  # no answer since: an unsubscribe acknowledged meanwhile may be unread
        assert not gate.fresh(0) and not gate.fresh(1)

    asyncio.run(run())


def test_a_leader_that_does_not_answer_holds_its_partition_only() -> None:
    async def run() -> None:
        now = [0.0]
        leaders = Leaders()
        gate = CaughtUp(leaders, clock=lambda: now[0])
        gate.assigned({0: 5, 1: 5})
        gate.probe()
        leaders.answer(0, 0, 5)
        leaders.answer(1, 0, 5)
        await settle()
        now[0] = 1.0
        gate.probe()
        leaders.answer(0, 0, 6)  # partition 1's leader is paused: its question stays open
        gate.applied({0: 6})
        await settle()
        now[0] = 1.2
        gate.probe()  # partition 1 is not asked twice while its question is open
        assert len(leaders.asked[1]) == 1 and len(leaders.asked[0]) == 1
        assert gate.fresh(0) and not gate.fresh(1)
        leaders.fail(1)
        await settle()
        await asyncio.sleep(0.05)
        assert leaders.refreshed == 1  # its leader may have moved: learned again
        gate.probe()
        assert len(leaders.asked[1]) == 1  # asked again after the failure

    asyncio.run(run())


def test_a_partition_read_from_its_beginning_is_caught_up_when_empty_or_once_applied() -> None:
    async def run() -> None:
        leaders = Leaders()
        gate = CaughtUp(leaders, clock=lambda: 0.0)
        gate.assigned({0: None, 1: None})
        gate.probe()
        leaders.answer(0, 3, 3)  # retention removed all of it
        leaders.answer(1, 3, 9)
        await settle()
        assert gate.fresh(0) and not gate.fresh(1)
        gate.applied({1: 9})
        assert gate.fresh(1)

    asyncio.run(run())


def test_a_partition_given_up_is_no_longer_caught_up_and_a_waiter_goes_on_once_it_is() -> None:
    async def run() -> None:
        leaders = Leaders()
        gate = CaughtUp(leaders, clock=lambda: 0.0)
        gate.assigned({0: 2})
        gate.probe()
        leaders.answer(0, 0, 4)
        await settle()
        waiting = asyncio.create_task(gate.wait(0))
        await settle()
        assert not waiting.done()
        gate.applied({0: 4})
        await asyncio.wait_for(waiting, 1.0)
        gate.assigned({})  # revoked
        assert not gate.fresh(0)
        gate.applied({0: 5})  # a late batch of a partition no longer read changes nothing
        assert not gate.fresh(0)

    asyncio.run(run())


def test_a_rebalance_ends_the_wait_so_it_cannot_hold_the_rebalance() -> None:
    async def run() -> None:
        rebalancing = [False]
        gate = CaughtUp(Leaders(), clock=lambda: 0.0, rebalancing=lambda: rebalancing[0])
        gate.assigned({0: 2})
        waiting = asyncio.create_task(gate.wait(0))
        await asyncio.sleep(0.15)
        assert not waiting.done()
        rebalancing[0] = True
        with pytest.raises(Rebalancing):
            await asyncio.wait_for(waiting, 1.0)

    asyncio.run(run())
