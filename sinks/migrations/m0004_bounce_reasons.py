"""Bounce reasons: the mailbox provider of each bounce (the reason itself goes to the ``reason`` column).

Rows written before have ``''`` there; reports read them as ``other`` (and a missing reason as
``undetermined``), as the live stats read events of schema 1.
"""

from __future__ import annotations

from sinks.migrations.engines import events_tables, on_cluster

NAME = "bounce_reasons"


def forwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} ADD COLUMN IF NOT EXISTS "
        "mailbox_provider LowCardinality(String) DEFAULT '' AFTER feedback_type"
        for table in events_tables(cluster)
    ]


def backwards(cluster: str | None) -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster(cluster)} DROP COLUMN IF EXISTS mailbox_provider"
        for table in reversed(events_tables(cluster))
    ]
