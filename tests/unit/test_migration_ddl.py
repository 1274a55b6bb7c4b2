from __future__ import annotations

from sinks.migrate import MIGRATIONS


def test_single_node_ddl_uses_plain_engines() -> None:
    ddl = "\n".join(s for m in MIGRATIONS for s in m.forwards(None))
    assert "ENGINE = ReplacingMergeTree(inserted_at)" in ddl and "ON CLUSTER" not in ddl
    assert "Distributed" not in ddl and "AggregatingMergeTree()" in ddl


def test_cluster_ddl_replicates_and_distributes() -> None:
    ddl = "\n".join(s for m in MIGRATIONS for s in m.forwards("analytics"))
    assert "CREATE TABLE IF NOT EXISTS events_local ON CLUSTER 'analytics'" in ddl
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}'" in ddl
    assert "ENGINE = Distributed('analytics', currentDatabase(), 'events_local', cityHash64(message_id))" in ddl
    assert "TO events_hourly_local" in ddl and "FROM events_local" in ddl
    back = "\n".join(s for m in MIGRATIONS for s in m.backwards("analytics"))
    assert "DROP TABLE IF EXISTS events_local ON CLUSTER 'analytics'" in back
