"""Which worker holds a key, for views that must answer from the owner's table.

Tables live where their source partitions are assigned; the partition of a key is the producers'
murmur2 hash of its raw bytes (librdkafka's ``murmur2_random`` and aiokafka's default agree), so a
view hashes the same way and asks faust's assignor which worker serves that changelog partition.
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import murmur2
from yarl import URL


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def owner_url(app: Any, table: Any, partition: int) -> URL | None:
    """The web URL of the worker serving ``partition`` of ``table``; None while nobody does."""
    topic = table.changelog_topic.get_topic_name()
    for url, topics in app.router.table_metadata(table.name).items():
        if partition in topics.get(topic, ()):
            return URL(url)
    return None


def is_local(app: Any, url: URL) -> bool:
    here = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (here.host, here.port)
