"""Offsets of stored batches, waiting to be committed.

A commit Kafka refuses is no reason to stop storing. After a broker restart the group coordinator
answers ``COORDINATOR_LOAD_IN_PROGRESS`` or ``NOT_COORDINATOR`` for a while, and during a rebalance a
commit can come from a stale generation. ``make chaos`` saw the sink die on the first of these. The
offsets are kept and go out with the next commit. Until then a restart would only read again rows
that are already stored, and rows are replaced by event id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException, TopicPartition

log = logging.getLogger(__name__)

Commit = Callable[[list[TopicPartition]], object]


class PendingCommits:
    def __init__(self, topic: str, commit: Commit, clock: Callable[[], float] = time.monotonic) -> None:
        self._topic = topic
        self._commit = commit
        self._clock = clock
        self._offsets: dict[int, int] = {}
        self.failing_since: float | None = None
        self.last_error = ""

    def add(self, offsets: dict[int, int]) -> None:
        """The next offsets of a stored batch; batches are added in the order they were read."""
        self._offsets.update(offsets)

    def commit(self) -> bool:
        """Commit what is waiting; False when Kafka refused, the offsets kept for the next call."""
        if not self._offsets:
            return True
        try:
            self._commit([TopicPartition(self._topic, p, o) for p, o in self._offsets.items()])
        except KafkaException as exc:
            self.last_error = str(exc.args[0] if exc.args else exc)
            if self.failing_since is None:
                self.failing_since = self._clock()
                log.warning("committing offsets failed (%s); kept for the next commit", self.last_error)
            return False
        if self.failing_since is not None:
            log.info("offsets committed again after %.1f s", self._clock() - self.failing_since)
        self._offsets.clear()
        self.failing_since = None
        return True

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions no longer ours: their next owner reads again from the last commit that took."""
        for partition in partitions:
            self._offsets.pop(partition, None)

    def stuck(self, after: float) -> str | None:
        """Why the sink is not healthy when commits have failed for more than ``after`` seconds."""
        if self.failing_since is None or self._clock() - self.failing_since <= after:
            return None
        return f"commits failing for {self._clock() - self.failing_since:.0f} s: {self.last_error}"
