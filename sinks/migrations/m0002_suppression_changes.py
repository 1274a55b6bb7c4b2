"""Suppression history: every change from the compacted ``mailpulse.suppression`` topic."""

from __future__ import annotations

from sinks.migrations.engines import create_table, drop_table

NAME = "suppression_changes"

COLUMNS_DDL = """
    recipient String,
    suppressed Bool,
    reasons Array(LowCardinality(String)),
    lists Array(String),
    since Nullable(DateTime64(3, 'UTC')),
    caused_by String,
    changed_at DateTime64(3, 'UTC'),
    kafka_partition UInt16,
    kafka_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
"""


def forwards(cluster: str | None) -> list[str]:
    return create_table(
        "suppression_changes",
        COLUMNS_DDL,
        "ReplacingMergeTree",
        ("inserted_at",),
        "PARTITION BY toYYYYMM(changed_at)\nORDER BY (recipient, changed_at, caused_by)",
        cluster,
        shard_key="cityHash64(recipient)",
    )


def backwards(cluster: str | None) -> list[str]:
    return drop_table("suppression_changes", cluster)
