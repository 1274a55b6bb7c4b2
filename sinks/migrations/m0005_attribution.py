"""Attribution: whether a bounce or complaint was tied to a message sent to its recipient.

Reports by mail that were not (``attributed = false``) are kept and suppress nobody; analysts find
them with ``SELECT ... FROM events WHERE NOT attributed``. Rows written before read ``true``: every
event was trusted then.
"""

from __future__ import annotations

from sinks.migrations.engines import events_tables, on_cluster

NAME = "attribution"


def forwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} ADD COLUMN IF NOT EXISTS "
        "attributed Bool DEFAULT true AFTER mailbox_provider"
        for table in events_tables(cluster)
    ]


def backwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} DROP COLUMN IF EXISTS attributed"
        for table in reversed(events_tables(cluster))
    ]
