"""Client configuration every part shares, so that keys partition the same way everywhere."""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka producer settings: durable (acks=all, idempotent) and Java-compatible partitioning.

    librdkafka's default partitioner (CRC32) differs from the Java and aiokafka
    default (murmur2); faust tables are co-partitioned with our topics only if
    both sides hash keys the same way.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 300_000,
    }
    config.update(overrides)
    return config
