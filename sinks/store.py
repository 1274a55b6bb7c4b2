"""The ClickHouse store behind one small interface, for chdb:// and http(s):// alike.

chdb runs in-process and allows one process per data path: the sink process
owns it and serves reads to everyone else over its query API.

Three sessions (chdb handles or HTTP clients), each with its own lock, so no read waits for an
insert and no insert for a read: the sink's writes, the project's own reads (reports), and the
analysts' SQL, whose session has its limits and ``readonly=1`` set once (see
:mod:`sinks.analyst_sql`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from schemas.settings import Settings
from sinks.analyst_sql import AnalystLimits, check_ast, check_statement
from sinks.rows import MappedRow, Row, TableMapping

# Lines carry every field of their event kind: the table's defaults fill the columns a kind lacks, null
# recipients become "". A field with no column is refused before the insert (sinks.rows.event_to_json),
# and ClickHouse refuses one too rather than skip it.
JSON_INSERT = {
    "input_format_skip_unknown_fields": 0,
    "input_format_null_as_default": 1,
    "date_time_input_format": "best_effort",
    # A batch is a few MB: splitting it across parser threads cost ~25 % more CPU than one parser
    # (measured in chdb), CPU the sink's fetching and mapping thread needs on a small machine.
    "input_format_parallel_parsing": 0,
}


def error_line(exc: BaseException, limit: int = 300) -> str:
    """ClickHouse's first line of an error (it names the cause; the rest is a stack), cut to ``limit``."""
    return str(exc).strip().splitlines()[0][:limit]


class AnalystBusy(RuntimeError):
    """Another analyst's statement held the analysts' session for the whole time limit."""


class EventStore:
    def __init__(self, url: str, analyst_url: str = "", limits: AnalystLimits | None = None) -> None:
        self.url = url
        self.client: Client = clickhouse_connect.get_client(dsn=url)
        self._lock = threading.Lock()
        self._reader: Client | None = None
        self._read_lock = threading.Lock()
        self._analyst: Client | None = None
        self._analyst_lock = threading.Lock()
        self._analyst_url = analyst_url or url
        self.limits = limits or AnalystLimits()
        self._database = ""

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
        """The project's own reads, on a session of their own."""
        with self._read_lock:
            if self._reader is None:
                self._reader = clickhouse_connect.get_client(dsn=self.url)
            result = self._reader.query(sql, parameters=parameters, settings=settings)
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def _analyst_session(self) -> Client:
        if self._analyst is None:
            settings = self.limits.session_settings()
            if self._analyst_url.startswith("chdb:"):
                # chdb keeps SET per handle; readonly comes last and then locks the rest.
                client = clickhouse_connect.get_client(dsn=self._analyst_url)
                for name, value in settings.items():
                    client.command(f"SET {name} = {value!r}" if isinstance(value, str) else f"SET {name} = {value}")
            elif self._analyst_url != self.url:
                # A restricted user of its own: its settings profile carries the limits (deploy/clickhouse).
                client = clickhouse_connect.get_client(dsn=self._analyst_url)
            else:
                client = clickhouse_connect.get_client(dsn=self._analyst_url, settings=settings)
            self._database = str(client.query("SELECT currentDatabase()").result_rows[0][0])
            self._analyst = client
        return self._analyst

    def analyst_query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """An analyst's statement, checked by ClickHouse's parser first (RefusedStatement), run within the limits."""
        statement = check_statement(sql)
        if not self._analyst_lock.acquire(timeout=self.limits.max_seconds):
            raise AnalystBusy("another analyst query is running; try again")
        try:
            client = self._analyst_session()
            # command(), not query(): query() appends its own FORMAT clause, which the parser would
            # read as the statement's.
            ast = client.command(f"EXPLAIN AST {statement}")
            check_ast("\n".join(ast) if isinstance(ast, list | tuple) else str(ast), self._database)
            result = client.query(statement)
        finally:
            self._analyst_lock.release()
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        for lock, client in (
            (self._lock, self.client),
            (self._read_lock, self._reader),
            (self._analyst_lock, self._analyst),
        ):
            if client is not None:
                with lock:
                    client.close()


def open_store(settings: Settings) -> EventStore:
    limits = AnalystLimits(
        max_seconds=settings.sql_max_seconds,
        max_rows=settings.sql_max_rows,
        max_memory_bytes=settings.sql_max_memory_mb << 20,
    )
    return EventStore(settings.clickhouse_url, settings.clickhouse_analyst_url, limits)
