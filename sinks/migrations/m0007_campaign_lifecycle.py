"""The campaign lifecycle in the raw table, and message lookups.

Campaign events (queued, paused, resumed, cancelled) are stored with the others; ``requests`` holds how many
send requests an intake queued (0 in every other row). A bloom-filter index on ``message_id`` lets the edge
find a message's recipient for a mailto: unsubscribe without reading every row of its kind.
"""

from __future__ import annotations

from sinks.migrations.engines import events_tables, on_cluster, storage_name

NAME = "campaign_lifecycle"


def forwards(cluster: str | None) -> list[str]:
    local = storage_name("events", cluster)
    return [
        *(
            f"ALTER TABLE {table}{on_cluster(cluster)} ADD COLUMN IF NOT EXISTS "
            "requests UInt32 DEFAULT 0 AFTER retry_at"
            for table in events_tables(cluster)
        ),
        f"ALTER TABLE {local}{on_cluster(cluster)} ADD INDEX IF NOT EXISTS message_lookup message_id "
        "TYPE bloom_filter(0.01) GRANULARITY 1",
        f"ALTER TABLE {local}{on_cluster(cluster)} MATERIALIZE INDEX message_lookup",
    ]


def backwards(cluster: str | None) -> list[str]:
    local = storage_name("events", cluster)
    return [
        f"ALTER TABLE {local}{on_cluster(cluster)} DROP INDEX IF EXISTS message_lookup",
        *(
            f"ALTER TABLE {table}{on_cluster(cluster)} DROP COLUMN IF EXISTS requests"
            for table in reversed(events_tables(cluster))
        ),
    ]
