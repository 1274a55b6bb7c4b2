"""What an analyst's SQL may do: read this project's tables, nothing of the host or the server.

ClickHouse's ``readonly=1`` refuses writes, DDL, ``SET`` and per-query ``SETTINGS``, and table
functions that touch the outside (``file``, ``url``, ``remote``, ``s3``). It still lets a SELECT
read ``system.*`` and call scalar functions such as ``file('/proc/self/environ')``. So each
statement is first parsed by ClickHouse itself (``EXPLAIN AST``, which only parses: nothing is
evaluated, no error can carry data back) and :func:`check_ast` walks that tree:

- every table named with a database must be in this project's database (a bare name is a CTE
  or a table of the session's database, which holds only this project's tables);
- table functions only from a short list that generates rows (``numbers``, ``zeros``, ...);
- no function that reads files, dictionaries, other tables by name, settings or server identity;
- no ``SETTINGS``, ``FORMAT`` or ``INTO OUTFILE`` clause (the limits, the output format and where the
  result goes are the API's: embedded, ``INTO OUTFILE`` wrote a file on the host under ``readonly=1``).

The limits themselves (time, rows, memory, threads) are set on the analysts' own session before
``readonly=1`` locks it; see :class:`sinks.store.EventStore`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_STATEMENT_START = re.compile(r"^\s*(SELECT|WITH|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
# ClickHouse parses SHOW DATABASES, SHOW SETTINGS and SHOW TABLES alike (one ShowTables node), so the
# one SHOW allowed is matched on its text.
_SHOW_TABLES = re.compile(r"^\s*SHOW\s+TABLES\s*$", re.IGNORECASE)

# Table functions that make rows out of their arguments alone.
ROW_GENERATORS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values"}
)

# Scalar functions that read the host, other tables or dictionaries by name, the server's settings,
# identity or state: nothing an analyst of events needs, and each a way out of the sandbox.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "hascolumnintable",
        "catboostevaluate",
        "modelevaluate",
        "evalmlmethod",
        "demangle",
        "hostname",
        "fqdn",
        "tcpport",
        "serveruuid",
        "uptime",
        "currentuser",
        "currentprofiles",
        "currentroles",
        "enabledprofiles",
        "enabledroles",
        "defaultprofiles",
        "defaultroles",
        "displayname",
        "getclienthttpheader",
        "getoskernelversion",
        "globalvariable",
        "shardnum",
        "shardcount",
        "zookeepersessionuptime",
        "initialqueryid",
        "initialquerystarttime",
        "queryid",
        "getmacro",
    }
)
DENIED_PREFIXES = ("dict", "joinget", "getsetting", "getserver", "getmergetree", "filesystem", "addressto")
_IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin"})
_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "ExistsTableQuery"})

_NODE = re.compile(r"^(?P<indent> *)(?P<kind>\w+)(?: (?P<name>\S+))?")


class RefusedStatement(ValueError):
    """An analyst's statement this API does not run; the message says why."""


def check_statement(sql: str) -> str:
    """The statement, stripped, if it is one read; RefusedStatement otherwise."""
    stripped = sql.strip().rstrip(";").strip()
    if not stripped:
        raise RefusedStatement("empty statement")
    if ";" in stripped:
        raise RefusedStatement("one statement at a time")
    if not (_STATEMENT_START.match(stripped) or _SHOW_TABLES.match(stripped)):
        raise RefusedStatement("only SELECT, WITH, SHOW TABLES, DESCRIBE, EXPLAIN and EXISTS are allowed")
    return stripped


@dataclass(frozen=True)
class _Node:
    depth: int
    kind: str
    name: str


def _nodes(ast: str) -> list[_Node]:
    nodes = []
    for line in ast.splitlines():
        match = _NODE.match(line)
        if match:
            nodes.append(_Node(len(match["indent"]), match["kind"], match["name"] or ""))
    return nodes


def _check_table(name: str, database: str) -> None:
    if "." in name:
        owner = name.split(".", 1)[0].strip('`"')
        if owner != database:
            raise RefusedStatement(f"only this project's tables can be read ({name} is not one)")


def _check_function(name: str, as_table: bool) -> None:
    lowered = name.lower()
    if as_table:
        if lowered not in ROW_GENERATORS:
            raise RefusedStatement(f"table function {name} is not allowed")
        return
    if lowered in DENIED_FUNCTIONS or lowered.startswith(DENIED_PREFIXES):
        raise RefusedStatement(f"function {name} is not allowed")


def _parent(nodes: list[_Node], index: int) -> _Node | None:
    depth = nodes[index].depth
    for earlier in reversed(nodes[:index]):
        if earlier.depth < depth:
            return earlier
    return None


def _in_operands(nodes: list[_Node], index: int) -> list[_Node]:
    """The operands of the IN at ``index`` (its ExpressionList's children); the second may name a table."""
    depth = nodes[index].depth
    operands = []
    for node in nodes[index + 1 :]:
        if node.depth <= depth:
            break
        if node.depth == depth + 2:
            operands.append(node)
    return operands


def check_ast(ast: str, database: str) -> None:
    """Refuse (RefusedStatement) anything in ``ast`` (ClickHouse's EXPLAIN AST) outside the sandbox."""
    nodes = _nodes(ast)
    if not nodes:
        raise RefusedStatement("statement could not be parsed")
    root = nodes[0]
    if root.kind == "Explain":
        nodes = nodes[1:]
        if not nodes or nodes[0].kind not in _ROOTS:
            raise RefusedStatement("EXPLAIN only of a SELECT")
        # EXPLAIN's own clauses sit beside its query: INTO OUTFILE, FORMAT, SETTINGS.
        for clause in (n for n in nodes[1:] if n.depth == nodes[0].depth):
            if clause.kind == "Literal":
                raise RefusedStatement("INTO OUTFILE is not allowed: results come back through the API")
            raise RefusedStatement(f"EXPLAIN takes no {clause.kind} clause here")
    elif root.kind == "ShowTables":
        if len(nodes) > 1:
            raise RefusedStatement("SHOW TABLES lists this project's tables only (no FROM)")
        return
    elif root.kind not in _ROOTS:
        raise RefusedStatement(f"{root.kind} statements are not allowed")
    top = nodes[0]
    for index, node in enumerate(nodes):
        if node.kind == "Set":
            raise RefusedStatement("SETTINGS cannot be changed in analysts' queries")
        if node.kind == "TableIdentifier":
            _check_table(node.name, database)
        elif node.kind == "Function":
            parent = _parent(nodes, index)
            _check_function(node.name, as_table=parent is not None and parent.kind == "TableExpression")
            if node.name.lower() in _IN_FUNCTIONS:
                for operand in _in_operands(nodes, index)[1:2]:
                    if operand.kind == "Identifier":
                        _check_table(operand.name, database)
        elif node.depth == top.depth + 1 and top.kind == "SelectWithUnionQuery" and node.kind != "ExpressionList":
            # The query's own clauses: INTO OUTFILE (a Literal: embedded, the server writes it on the host)
            # and FORMAT (an Identifier). Only the statement itself (its ExpressionList) is kept.
            if node.kind == "Literal":
                raise RefusedStatement("INTO OUTFILE is not allowed: results come back through the API")
            if node.kind == "Identifier":
                raise RefusedStatement("FORMAT is chosen by the API; leave it out")
            raise RefusedStatement(f"{node.kind} clause is not allowed")
    if top.kind == "ExistsTableQuery":
        # EXISTS db.t has two identifiers, the database first.
        names = [n.name for n in nodes if n.kind == "Identifier" and n.depth == top.depth + 1]
        if len(names) == 2:
            _check_table(".".join(names), database)


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst's statement may use; fixed on the analysts' session, never per statement."""

    max_seconds: float = 30.0
    max_rows: int = 10_000
    max_memory_bytes: int = 1 << 30
    # One thread: a heavy query then takes one core, and ingestion keeps the others.
    max_threads: int = 1

    def session_settings(self) -> dict[str, Any]:
        """In order; ``readonly`` last, since once it is set nothing else can change."""
        return {
            "max_execution_time": self.max_seconds,
            "timeout_overflow_mode": "throw",
            "max_result_rows": self.max_rows,
            "result_overflow_mode": "break",
            "max_memory_usage": self.max_memory_bytes,
            "max_threads": self.max_threads,
            "readonly": 1,
        }
