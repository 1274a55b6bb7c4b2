"""The raw events table: one row per event, deduplicated by event_id.

ReplacingMergeTree collapses redelivered and replayed copies at merge time;
reports never depend on that: they count distinct event and message ids.
"""

from __future__ import annotations

from sinks.migrations.engines import create_table, drop_table

NAME = "events"

COLUMNS_DDL = """
    event_id String,
    kind LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    campaign_id String,
    message_id String,
    recipient String,
    list_id LowCardinality(String),
    agent_class LowCardinality(String),
    user_agent String,
    client_ip String,
    url String,
    scope LowCardinality(String),
    method LowCardinality(String),
    smtp_code UInt16,
    smtp_reply String,
    attempt UInt16,
    bounce_class LowCardinality(String),
    status LowCardinality(String),
    diagnostic String,
    source LowCardinality(String),
    reason String,
    feedback_type LowCardinality(String),
    schema_version UInt8,
    kafka_partition UInt16,
    kafka_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
"""


def forwards(cluster: str | None) -> list[str]:
    return create_table(
        "events",
        COLUMNS_DDL,
        "ReplacingMergeTree",
        ("inserted_at",),
        "PARTITION BY toYYYYMM(occurred_at)\nORDER BY (campaign_id, kind, message_id, event_id)",
        cluster,
        shard_key="cityHash64(message_id)",
    )


def backwards(cluster: str | None) -> list[str]:
    return drop_table("events", cluster)
