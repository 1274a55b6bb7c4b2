"""The sink's pending commits: a commit Kafka refuses keeps its offsets for the next one."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sinks.commits import PendingCommits


class Coordinator:
    """The group coordinator as a commit sees it: refusing with ``errors`` first, then taking commits."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.committed: list[dict[int, int]] = []

    def commit(self, offsets: list[TopicPartition]) -> None:
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        self.committed.append({tp.partition: tp.offset for tp in offsets})


def test_a_commit_refused_while_the_coordinator_loads_is_kept_and_goes_out_with_the_next() -> None:
    now = [0.0]
    coordinator = Coordinator(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR)
    commits = PendingCommits("events", coordinator.commit, clock=lambda: now[0])
    commits.add({0: 10, 1: 5})
    assert commits.commit() is False
    commits.add({0: 20, 2: 7})  # a later batch: its offsets win for partition 0
    now[0] = 31.0
    assert commits.commit() is False
    assert commits.stuck(after=30) is not None and "NOT_COORDINATOR" in (commits.stuck(after=30) or "")
    assert commits.stuck(after=60) is None
    assert commits.commit() is True
    assert coordinator.committed == [{0: 20, 1: 5, 2: 7}]
    assert commits.stuck(after=0) is None and commits.commit() is True
    assert coordinator.committed == [{0: 20, 1: 5, 2: 7}]  # nothing waiting: nothing sent


def test_partitions_given_away_are_not_committed_by_their_old_owner() -> None:
    coordinator = Coordinator(KafkaError.REBALANCE_IN_PROGRESS)
    commits = PendingCommits("events", coordinator.commit)
    commits.add({0: 10, 1: 5})
    assert commits.commit() is False
    commits.forget([1])
    assert commits.commit() is True
    assert coordinator.committed == [{0: 10}]
