"""The hostile corpus's cases for the operator's doors: the operator edge (campaign intake, sessions) and the
sink's SQL. The public edge's are in tests/support/hostile_corpus.py, the mail and CLI ones in
tests/support/hostile_mail.py."""

from __future__ import annotations

from tests.support.hostile_corpus import HTTP_4XX, HttpCase, campaign, http, key, operator, sink

OPERATOR_CASES = [
    HttpCase(
        "campaign without a key",
        operator,
        lambda s: http("POST", b"/campaigns", campaign(), {"Content-Type": "application/json"}),
        frozenset({401}),
    ),
    HttpCase(
        "campaign with the key in the query",
        operator,
        lambda s: http(
            "POST", f"/campaigns?api_key={s.api_keys[0]}".encode(), campaign(), {"Content-Type": "application/json"}
        ),
        frozenset({401}),
    ),
    HttpCase(
        "CRLF in the subject",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(subject="Hi\r\nBcc: all@example.org"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a header injected through an address",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(recipients=[{"email": "a@example.org\r\nBcc: b@example.org"}]),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "CRLF in the From",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(from_address="x@example.org\r\nReply-To: evil@example.net"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a campaign id with a path and a newline",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            campaign(campaign_id="../../etc/passwd\n"),
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a 2 MB body",
        operator,
        lambda s: http(
            "POST", b"/campaigns", campaign(html="x" * 2_000_000), {**key(s), "Content-Type": "application/json"}
        ),
        frozenset({413}),
    ),
    HttpCase(
        "invalid UTF-8 JSON",
        operator,
        lambda s: http(
            "POST", b"/campaigns", b'{"campaign_id": "\xff\xfe"}', {**key(s), "Content-Type": "application/json"}
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "recipients nested 50,000 deep",
        operator,
        lambda s: http(
            "POST",
            b"/campaigns",
            b'{"recipients": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            {**key(s), "Content-Type": "application/json"},
        ),
        HTTP_4XX,
    ),
    HttpCase(
        "a forged session cookie",
        operator,
        lambda s: http("GET", b"/ui/campaigns", headers={"Cookie": "mailpulse_session=eyJrZXkiOiAieCJ9.forged.sig"}),
        frozenset({303, 401}),
    ),
]


# SQL that reaches out of the analysts' sandbox: the host's files, the network, other servers, the
# server's own state, or the limits themselves.
HOSTILE_SQL = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString', 'x String')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv')",
    "SELECT * FROM executable('id', 'LineAsString', 'x String')",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT name FROM system.users",
    "SELECT * FROM system.settings",
    "SELECT * FROM information_schema.tables",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 100000",
    "INSERT INTO events (event_id) VALUES ('x')",
    "DROP TABLE events",
    "SELECT 1; DROP TABLE events",
    "CREATE TEMPORARY TABLE t AS SELECT * FROM file('/etc/hostname')",
    "SELECT getSetting('readonly')",
    "SELECT * FROM events INTO OUTFILE '/tmp/x'",
    "SELECT * FROM numbers(10) FORMAT Native",
    "SYSTEM SHUTDOWN",
    "",
    "SELECT '\udcff'".encode("utf-8", "surrogateescape").decode("latin-1"),
]
SQL_CASES = [
    HttpCase(
        f"SQL: {statement[:60] or '(empty)'}",
        sink,
        lambda s, statement=statement: http("POST", b"/sql", statement.encode("latin-1", "replace"), key(s)),
        HTTP_4XX,
    )
    for statement in HOSTILE_SQL
]
