"""Which partition a key is in: the producers' murmur2 hash of its raw bytes (librdkafka's
``murmur2_random`` and aiokafka's default agree), so the worker's views and its campaign partials hash
the same way as every producer of the project."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
