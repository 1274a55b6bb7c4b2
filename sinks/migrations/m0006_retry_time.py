"""A deferral's retry time: when the sender will try the message again.

Deferrals carried ``retry_at`` from the start, and the sink dropped it for want of a column. Rows written
before read NULL; every other kind has none.
"""

from __future__ import annotations

from sinks.migrations.engines import events_tables, on_cluster

NAME = "retry_time"


def forwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} ADD COLUMN IF NOT EXISTS "
        "retry_at Nullable(DateTime64(3, 'UTC')) AFTER attempt"
        for table in events_tables(cluster)
    ]


def backwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} DROP COLUMN IF EXISTS retry_at"
        for table in reversed(events_tables(cluster))
    ]
