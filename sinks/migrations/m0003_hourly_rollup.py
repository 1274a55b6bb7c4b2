"""Hourly rollup per campaign, fed by a materialized view from the raw events.

It keeps uniqExact *states* of event and message ids rather than counts, so a
redelivered or replayed event merges into the same state: the rollup never
double counts, whether or not the raw table's duplicates were merged yet.
"""

from __future__ import annotations

from sinks.migrations.engines import create_table, drop_table, on_cluster, storage_name

NAME = "events_hourly"

COLUMNS_DDL = """
    campaign_id String,
    hour DateTime('UTC'),
    kind LowCardinality(String),
    agent_class LowCardinality(String),
    bounce_class LowCardinality(String),
    events AggregateFunction(uniqExact, String),
    messages AggregateFunction(uniqExact, String)
"""


def forwards(cluster: str | None) -> list[str]:
    target = storage_name("events_hourly", cluster)
    source = storage_name("events", cluster)
    return [
        *create_table(
            "events_hourly",
            COLUMNS_DDL,
            "AggregatingMergeTree",
            (),
            "PARTITION BY toYYYYMM(hour)\nORDER BY (campaign_id, hour, kind, agent_class, bounce_class)",
            cluster,
            shard_key="cityHash64(campaign_id)",
        ),
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS events_hourly_mv{on_cluster(cluster)} TO {target} AS
        SELECT campaign_id, toStartOfHour(occurred_at) AS hour, kind, agent_class, bounce_class,
               uniqExactState(event_id) AS events, uniqExactState(message_id) AS messages
        FROM {source}
        GROUP BY campaign_id, hour, kind, agent_class, bounce_class""",
        # Backfill what the raw table already holds (the view only sees new inserts).
        f"""INSERT INTO {target}
        SELECT campaign_id, toStartOfHour(occurred_at) AS hour, kind, agent_class, bounce_class,
               uniqExactState(event_id), uniqExactState(message_id)
        FROM {source}
        GROUP BY campaign_id, hour, kind, agent_class, bounce_class""",
    ]


def backwards(cluster: str | None) -> list[str]:
    return [f"DROP VIEW IF EXISTS events_hourly_mv{on_cluster(cluster)}", *drop_table("events_hourly", cluster)]
