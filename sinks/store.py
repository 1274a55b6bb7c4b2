"""The ClickHouse store behind one small interface, for chdb:// and http(s):// alike.

chdb runs in-process and allows one process per data path: the sink process
owns it and serves reads to everyone else over its query API.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.rows import MappedRow, Row, TableMapping

# Lines carry every field of their event kind: the table's defaults fill the columns a kind lacks,
# fields that are no column (such as a deferral's retry_at) are skipped, null recipients become "".
JSON_INSERT = {
    "input_format_skip_unknown_fields": 1,
    "input_format_null_as_default": 1,
    "date_time_input_format": "best_effort",
    # A batch is a few MB: splitting it across parser threads cost ~25 % more CPU than one parser
    # (measured in chdb), CPU the sink's fetching and mapping thread needs on a small machine.
    "input_format_parallel_parsing": 0,
}


class EventStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: Client = clickhouse_connect.get_client(dsn=url)
        # One engine handle shared by the consumer thread and the query API.
        self._lock = threading.Lock()

    def command(self, sql: str) -> None:
        with self._lock:
            self.client.command(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        with self._lock:
            self.client.insert(table, rows, column_names=list(columns))

    def write(self, mapping: TableMapping, rows: Sequence[MappedRow]) -> None:
        """Insert what ``mapping`` made of a batch of records: tuples, or JSONEachRow lines."""
        # The mapping decides the shape of every row it makes; no per-row check on this hot path.
        if not mapping.json_rows:
            self.insert(mapping.table, mapping.columns, cast(Sequence[Row], rows))
            return
        if not rows:
            return
        lines = b"\n".join(cast(Sequence[bytes], rows))
        with self._lock:
            self.client.raw_insert(mapping.table, list(mapping.columns), lines, settings=JSON_INSERT, fmt="JSONEachRow")

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            result = self.client.query(sql, parameters=parameters, settings=settings)
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        with self._lock:
            self.client.close()
