"""Engine clauses for one node or a cluster (ReplicatedMergeTree family)."""

from __future__ import annotations


def on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER '{cluster}'" if cluster else ""


def table_engine(family: str, table: str, cluster: str | None, *args: str) -> str:
    arguments = ", ".join(args)
    if not cluster:
        return f"{family}({arguments})"
    replica_args = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'"
    return f"Replicated{family}({replica_args}{', ' + arguments if arguments else ''})"
