"""The worker's state behind one interface: a key-value table, split by source partition.

Everything above this module reads and writes a table through :class:`PartitionStore`, with keys typed
per table (:mod:`processors.state_keys`) and values encoded by the module that owns them. How faust holds
the tables (changelog topics, recovery, memory or RocksDB) is :mod:`processors.faust_store`'s business
alone. :class:`DictStore` holds one in a dict and rebuilds one from changelog records, as faust does
after a restart: what the unit tests run against.

A table write reaches its store only once Kafka acknowledged its changelog record
(:mod:`processors.output`); until then it is read back from the pending writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

import msgspec

K = TypeVar("K", bound=str)
K_contra = TypeVar("K_contra", bound=str, contravariant=True)

_json = msgspec.json.Encoder()
_decode_json = msgspec.json.Decoder(str)


def changelog_record(key: str, value: str) -> tuple[bytes, bytes]:
    """A table write as its changelog record: JSON key and value, the format faust recovers tables from."""
    return _json.encode(key), _json.encode(value)


def changelog_entry(key: bytes, value: bytes) -> tuple[str, str]:
    """The write a changelog record stands for (the inverse of :func:`changelog_record`)."""
    return _decode_json.decode(key), _decode_json.decode(value)


class PartitionStore(Protocol[K_contra]):
    """One table of the worker. ``partition`` is the source partition a key belongs to: the tables are
    co-partitioned with the topics that feed them, and each partition's part moves with it."""

    @property
    def name(self) -> str: ...

    @property
    def changelog_topic(self) -> str: ...

    def get(self, key: K_contra, partition: int) -> str | None:
        """The stored value of ``key`` in ``partition``; None when absent."""
        ...

    def lookup(self, key: K_contra) -> str | None:
        """The stored value of ``key`` wherever it is held (a reader outside any batch, such as a view)."""
        ...

    def set(self, key: K_contra, value: str, partition: int) -> None:
        """Store ``value``; only for a write whose changelog record Kafka acknowledged."""
        ...

    def persisted(self, partition: int, changelog_offset: int) -> None:
        """The store holds ``partition``'s changelog up to ``changelog_offset``: recovery starts after it."""
        ...


class DictStore(Generic[K]):
    """A table in a dict (every partition in one: keys never collide across partitions)."""

    def __init__(self, name: str, changelog_topic: str = "") -> None:
        self._name = name
        self._changelog_topic = changelog_topic or f"{name}-changelog"
        self.data: dict[str, str] = {}
        self.offsets: dict[int, int] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def changelog_topic(self) -> str:
        return self._changelog_topic

    def get(self, key: K, partition: int) -> str | None:
        return self.data.get(key)

    def lookup(self, key: K) -> str | None:
        return self.data.get(key)

    def set(self, key: K, value: str, partition: int) -> None:
        self.data[key] = value

    def persisted(self, partition: int, changelog_offset: int) -> None:
        self.offsets[partition] = changelog_offset

    @classmethod
    def recovered(cls, name: str, changelog_topic: str, records: Iterable[tuple[bytes, bytes]]) -> DictStore[K]:
        """A store rebuilt from its changelog records in order, as a restarted worker gets it."""
        store: DictStore[K] = cls(name, changelog_topic)
        for key, value in records:
            entry_key, entry_value = changelog_entry(key, value)
            store.data[entry_key] = entry_value
        return store


__all__ = ["DictStore", "K", "PartitionStore", "changelog_entry", "changelog_record"]
