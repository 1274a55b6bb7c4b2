"""What became of each message, kept beside the raw events: the campaign report's per-message flags.

A campaign report combines facts about each message (sent and not bounced is delivered; skipped and never
tried is skipped). Grouping ten million raw events by message took 0.7-1.4 s on two cores; a materialized
view keeps one row per message and insert block instead, with each flag a ``max`` (a duplicated or replayed
event cannot change it), and background merges fold them to about one row per message. Machine opens set
no flag, so they are left out. Events with no message id belong to no message and are left out too.
"""

from __future__ import annotations

from sinks.migrations.engines import create_table, drop_table, on_cluster, storage_name

NAME = "message_outcomes"

# flag column -> the condition on an event that sets it
FLAGS: dict[str, str] = {
    "was_sent": "kind = 'sent'",
    "was_delivered": "kind = 'delivered'",
    "was_failed": "kind = 'failed'",
    "was_skipped": "kind = 'send.skipped'",
    "hard": "kind = 'bounce' AND bounce_class = 'hard'",
    "soft": "kind = 'bounce' AND bounce_class = 'soft'",
    "block": "kind = 'bounce' AND bounce_class = 'block'",
    "human_open": "kind = 'open' AND agent_class = 'human'",
    "clicked": "kind = 'click'",
    "unsubscribed": "kind = 'unsubscribe'",
    "complained": "kind = 'complaint'",
}

_SOURCE_FILTER = "message_id != '' AND campaign_id != '' AND NOT (kind = 'open' AND agent_class != 'human')"


def _select(source: str) -> str:
    flags = ",\n               ".join(f"toUInt8(max({condition})) AS {flag}" for flag, condition in FLAGS.items())
    return (
        f"SELECT campaign_id, message_id,\n               {flags}\n        FROM {source}\n"
        f"        WHERE {_SOURCE_FILTER}\n        GROUP BY campaign_id, message_id"
    )


def forwards(cluster: str | None) -> list[str]:
    target = storage_name(NAME, cluster)
    source = storage_name("events", cluster)
    columns = "\n    campaign_id String,\n    message_id String,\n" + ",\n".join(
        f"    {flag} SimpleAggregateFunction(max, UInt8)" for flag in FLAGS
    )
    return [
        *create_table(
            NAME,
            columns,
            "AggregatingMergeTree",
            (),
            "ORDER BY (campaign_id, message_id)",
            cluster,
            # Where the events of the message are: each shard folds the messages it holds.
            shard_key="cityHash64(message_id)",
        ),
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {NAME}_mv{on_cluster(cluster)} TO {target} AS\n"
        f"        {_select(source)}",
        # Backfill what the raw table already holds (the view only sees new inserts).
        f"INSERT INTO {target}\n        {_select(source)}",
    ]


def backwards(cluster: str | None) -> list[str]:
    return [f"DROP VIEW IF EXISTS {NAME}_mv{on_cluster(cluster)}", *drop_table(NAME, cluster)]
