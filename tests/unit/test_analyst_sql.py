"""The analysts' sandbox on ClickHouse's own parse of each statement (EXPLAIN AST, in-process chdb)."""

from __future__ import annotations

from collections.abc import Iterator

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from sinks.analyst_sql import AnalystLimits, RefusedStatement, check_ast, check_statement


@pytest.fixture(scope="module")
def parser() -> Iterator[Client]:
    client = clickhouse_connect.get_client(interface="chdb")
    yield client
    client.close()


def check(parser: Client, sql: str) -> None:
    statement = check_statement(sql)
    check_ast(str(parser.command(f"EXPLAIN AST {statement}")), "default")


ALLOWED = [
    "SELECT count() FROM events",
    "select kind, count() from default.events group by kind order by 2 desc",
    "WITH opened AS (SELECT recipient FROM events WHERE kind = 'open') SELECT count() FROM opened",
    "SELECT e.kind FROM events AS e JOIN suppression_changes AS s ON e.recipient = s.address",
    "SELECT * FROM events WHERE recipient IN (SELECT address FROM suppression_changes)",
    "SELECT * FROM events WHERE campaign_id IN ('a', 'b') AND kind NOT IN events_hourly",
    "SELECT arrayMap(x -> x * 2, [1, 2])",
    "SELECT number FROM numbers(10)",
    "SELECT * FROM events FINAL LIMIT 1 BY kind",
    "SELECT * FROM events AS system",
    "SELECT count() FROM events a, events b",
    "EXPLAIN SELECT count() FROM events",
    "DESCRIBE TABLE events",
    "DESC events",
    "EXISTS TABLE events",
    "  SHOW TABLES;",
]

REFUSED = [
    ("SELECT line FROM file('/proc/self/environ', 'LineAsString')", "table function file"),
    ("SELECT file('/proc/self/environ')", "function file"),
    ("SELECT FILE('/etc/passwd')", "function FILE"),
    ("SELECT `file`('/etc/passwd')", "function file"),
    ("SELECT arrayMap(p -> file(p), ['/etc/passwd'])", "function file"),
    ("SELECT * FROM url('http://169.254.169.254/latest/meta-data/', 'LineAsString')", "table function url"),
    ("SELECT * FROM remote('127.0.0.1', system.users)", "table function remote"),
    ("SELECT * FROM s3('http://127.0.0.1/x', 'CSV')", "table function s3"),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", "table function executable"),
    ("SELECT * FROM merge('system', '.*')", "table function merge"),
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT * FROM `system`.`settings`", "system.settings"),
    ("SELECT * FROM INFORMATION_SCHEMA.TABLES", "INFORMATION_SCHEMA.TABLES"),
    ("SELECT * FROM events UNION ALL SELECT * FROM system.one", "system.one"),
    ("SELECT * FROM (SELECT name FROM system.processes)", "system.processes"),
    ("SELECT * FROM events JOIN system.one ON 1", "system.one"),
    ("SELECT * FROM events WHERE recipient GLOBAL IN system.users", "system.users"),
    ("DESCRIBE system.users", "system.users"),
    ("EXISTS TABLE system.users", "system.users"),
    ("SELECT getSetting('readonly')", "function getSetting"),
    ("SELECT hostName(), currentUser()", "function hostName"),
    ("SELECT dictGet('d', 'a', toUInt64(1))", "function dictGet"),
    ("SELECT joinGet('j', 'v', 1)", "function joinGet"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "function hasColumnInTable"),
    ("SELECT count() FROM events FORMAT JSON", "FORMAT"),
    # Written by the embedded server on the host (a 2 MB /tmp/x from the hostile corpus).
    ("SELECT * FROM events INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/x' APPEND", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/x.gz' TRUNCATE COMPRESSION 'gzip' FORMAT CSV", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/x' AND STDOUT", "INTO OUTFILE"),
    ("SELECT * FROM (SELECT 1) INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("EXPLAIN SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("SHOW DATABASES", "only SELECT"),
    ("SHOW SETTINGS LIKE '%'", "only SELECT"),
    ("SHOW TABLES FROM system", "only SELECT"),
    ("SHOW PROCESSLIST", "only SELECT"),
    ("DROP TABLE events", "only SELECT"),
    ("insert into events values (1)", "only SELECT"),
    ("OPTIMIZE TABLE events", "only SELECT"),
    ("ALTER TABLE events DELETE WHERE 1", "only SELECT"),
    ("SET readonly = 0", "only SELECT"),
    ("SELECT 1; DROP TABLE x", "one statement"),
    ("", "empty"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_reads_of_the_project_tables_pass(parser: Client, sql: str) -> None:
    check(parser, sql)


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_everything_outside_the_sandbox_is_refused_with_its_reason(parser: Client, sql: str, why: str) -> None:
    with pytest.raises(RefusedStatement, match=why.replace("(", r"\(")):
        check(parser, sql)


def test_a_statement_settings_clause_is_refused_by_the_check() -> None:
    # The analysts' session refuses it too (readonly=1); the check says why before ClickHouse does.
    ast = "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n   Set"
    with pytest.raises(RefusedStatement, match="SETTINGS"):
        check_ast(ast, "default")


def test_the_limits_are_set_before_readonly_locks_the_session() -> None:
    settings = AnalystLimits(max_seconds=7, max_rows=5, max_memory_bytes=1 << 20).session_settings()
    assert list(settings)[-1] == "readonly" and settings["readonly"] == 1
    assert settings["max_execution_time"] == 7 and settings["max_result_rows"] == 5
    assert settings["max_memory_usage"] == 1 << 20 and settings["timeout_overflow_mode"] == "throw"
