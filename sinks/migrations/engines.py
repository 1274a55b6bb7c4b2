"""Table DDL for one node or a cluster.

On one node a table is what its name says. With a cluster name, the data
lives in ``<name>_local`` (ReplicatedMergeTree family, ON CLUSTER) and
``<name>`` is a Distributed table over it, sharded by a hash of the key given,
so every query and insert keeps using the plain name.
"""

from __future__ import annotations


def on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER '{cluster}'" if cluster else ""


def table_engine(family: str, table: str, cluster: str | None, *args: str) -> str:
    arguments = ", ".join(args)
    if not cluster:
        return f"{family}({arguments})"
    replica_args = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'"
    return f"Replicated{family}({replica_args}{', ' + arguments if arguments else ''})"


def storage_name(table: str, cluster: str | None) -> str:
    """Where rows physically live: the table itself, or its ``_local`` part on a cluster."""
    return f"{table}_local" if cluster else table


def create_table(
    table: str, columns: str, family: str, engine_args: tuple[str, ...], tail: str, cluster: str | None, shard_key: str
) -> list[str]:
    local = storage_name(table, cluster)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {local}{on_cluster(cluster)} ({columns})\n"
        f"ENGINE = {table_engine(family, local, cluster, *engine_args)}\n{tail}"
    ]
    if cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {table}{on_cluster(cluster)} AS {local}\n"
            f"ENGINE = Distributed('{cluster}', currentDatabase(), '{local}', {shard_key})"
        )
    return statements


def drop_table(table: str, cluster: str | None) -> list[str]:
    statements = [f"DROP TABLE IF EXISTS {table}{on_cluster(cluster)}"]
    if cluster:
        statements.append(f"DROP TABLE IF EXISTS {storage_name(table, cluster)}{on_cluster(cluster)}")
    return statements


def events_tables(cluster: str | None) -> list[str]:
    """The tables a column of ``events`` is added to: on a cluster the Distributed table's columns
    change with the local table's."""
    return [storage_name("events", cluster), *(["events"] if cluster else [])]
