-- A restricted ClickHouse user for analysts' SQL on a ClickHouse server.
--
-- Run once as an administrator (replace the password and the database name `mailpulse`), then set
--   MAILPULSE_CLICKHOUSE_ANALYST_URL=https://mailpulse_analyst:PASSWORD@HOST:8443/mailpulse
-- The sink then runs `POST /sql` and `mailpulse sql` as this user. Its profile fixes the same limits
-- the embedded store sets on its analysts' session (MAILPULSE_SQL_MAX_SECONDS, _MAX_ROWS,
-- _MAX_MEMORY_MB); CONST means no statement can change them. The sink still checks every statement
-- with ClickHouse's parser first (no system tables, no table functions that reach out, no file()).
-- Set `select_from_system_db_requires_grant` and `select_from_information_schema_requires_grant` to
-- true in the server's config so the system tables ClickHouse opens to every user stay closed too.

CREATE SETTINGS PROFILE IF NOT EXISTS mailpulse_analyst SETTINGS
    max_execution_time = 30 CONST,
    timeout_overflow_mode = 'throw' CONST,
    max_result_rows = 10000 CONST,
    result_overflow_mode = 'break' CONST,
    max_memory_usage = 1073741824 CONST,
    max_threads = 1 CONST,
    readonly = 1 CONST;

CREATE USER IF NOT EXISTS mailpulse_analyst
    IDENTIFIED WITH sha256_password BY 'change-me'
    SETTINGS PROFILE 'mailpulse_analyst';

-- SELECT on the project's database only: no CREATE TEMPORARY TABLE (so no table functions),
-- no FILE, URL, REMOTE, S3 or dictionary grants.
GRANT SELECT ON mailpulse.* TO mailpulse_analyst;
