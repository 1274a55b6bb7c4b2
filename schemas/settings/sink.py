"""Settings of the sink: the ClickHouse store, analysts' SQL and the batches it inserts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.settings.declare import Service, integer, number, setting

SINK, CLI, STACK = Service.SINK, Service.CLI, Service.STACK


def _embedded(values: Mapping[str, Any]) -> str:
    return f"chdb://{values['var_dir'] / 'clickhouse'}"


@dataclass(frozen=True)
class SinkSettings:
    sink_api_port: int = setting(
        "SINK_API_PORT", 8082, "port of the sink's query API", read_by=(SINK, CLI, STACK), parse=integer(1)
    )
    clickhouse_url: str = setting(
        "CLICKHOUSE_URL",
        "",
        "`chdb://PATH` (embedded) or `http(s)://user:pass@host:port/db`",
        read_by=(SINK, CLI),
        derive=_embedded,
        shown="`chdb://$VAR_DIR/clickhouse`",
    )
    clickhouse_analyst_url: str = setting(
        "CLICKHOUSE_ANALYST_URL",
        "",
        "a ClickHouse server user for analysts' SQL whose profile fixes the limits",
        read_by=(SINK,),
        shown="(the store's URL)",
    )
    sql_max_seconds: float = setting(
        "SQL_MAX_SECONDS", 30.0, "time limit of one analyst's statement", read_by=(SINK,), parse=number(above=0)
    )
    sql_max_rows: int = setting(
        "SQL_MAX_ROWS",
        10_000,
        "rows one analyst's statement returns at most (`truncated` says when cut)",
        read_by=(SINK,),
        parse=integer(1),
    )
    sql_max_memory_mb: int = setting(
        "SQL_MAX_MEMORY_MB", 1024, "memory one analyst's statement may use", read_by=(SINK,), parse=integer(16)
    )
    sink_batch_size: int = setting(
        "SINK_BATCH_SIZE", 50_000, "rows the sink inserts at once at most", read_by=(SINK,), parse=integer(1)
    )
    sink_batch_seconds: float = setting(
        "SINK_BATCH_SECONDS", 0.5, "longest a sink batch waits to fill", read_by=(SINK,)
    )
    sink_insert_attempts: int = setting(
        "SINK_INSERT_ATTEMPTS",
        6,
        "tries of one insert (waits doubling from 0.5 s), then the sink exits with status 1",
        read_by=(SINK,),
        parse=integer(1),
    )
    sink_stuck_seconds: float = setting(
        "SINK_STUCK_SECONDS",
        120.0,
        "the sink's /healthz answers 503 once an insert has run, or commits have failed, this long",
        read_by=(SINK,),
    )
