"""Typed settings, parsed once from ``MAILPULSE_*`` environment variables.

Every part receives a :class:`Settings` instance from the entry point; nothing
reads the environment anywhere else. Each field is documented in the README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEV_SECRET_KEY = "mailpulse-dev-only-secret-change-me"
MIN_UNSUBSCRIBE_DAYS = 30


class SettingsError(ValueError):
    """A MAILPULSE_* variable holds a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _rates(env: Mapping[str, str], name: str) -> tuple[tuple[str, float], ...]:
    """``gmail.com=50,yahoo.com=20,*=100``: messages per second per recipient domain, ``*`` for the rest."""
    rates = []
    for part in _list(env, name):
        domain, sep, raw = part.partition("=")
        try:
            rate = float(raw)
        except ValueError:
            rate = 0.0
        if not sep or not domain.strip() or rate <= 0:
            raise SettingsError(f"{name} takes domain=messages_per_second pairs (and *=rate), got {part!r}")
        rates.append((domain.strip().lower(), rate))
    return tuple(rates)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    var_dir: Path = Path("var")
    kafka_bootstrap: str = ""
    local_kafka_port: int = 9092
    topic_prefix: str = "mailpulse"
    topic_partitions: int = 6
    replication_factor: int = 1
    events_retention_ms: int = 30 * 24 * 3600 * 1000
    clickhouse_url: str = ""
    clickhouse_analyst_url: str = ""
    sql_max_seconds: float = 30.0
    sql_max_rows: int = 10_000
    sql_max_memory_mb: int = 1024
    smtp_url: str = "smtp://127.0.0.1:2525"
    smtp_sink_port: int = 2525
    edge_host: str = "127.0.0.1"
    edge_port: int = 8080
    operator_port: int = 8081
    sink_api_port: int = 8082
    worker_web_port: int = 6066
    public_base_url: str = ""
    secret_keys: tuple[str, ...] = (DEV_SECRET_KEY,)
    api_keys: tuple[str, ...] = ()
    environment: str = "production"
    click_token_max_age_days: int = 0
    unsubscribe_token_max_age_days: int = 0
    from_address: str = "Mailpulse Demo <news@example.com>"
    bounce_domain: str = "bounces.example.com"
    unsubscribe_mailto: str = "unsubscribe@example.com"
    soft_bounce_threshold: int = 3
    soft_bounce_window_days: int = 7
    complaint_warning_rate: float = 0.001
    complaint_critical_rate: float = 0.003
    complaint_alert_min_delivered: int = 1000
    block_alert_rate: float = 0.05
    block_alert_window_seconds: int = 600
    block_alert_min_attempts: int = 50
    smtp_sink_replies: str = ""
    max_send_attempts: int = 5
    smtp_connections: int = 16
    smtp_pipelining: bool = True
    send_batch_size: int = 2000
    domain_rate_limits: tuple[tuple[str, float], ...] = ()
    domain_burst: int = 10
    event_batch_size: int = 1000
    worker_session_timeout_seconds: float = 10.0
    retry_base_seconds: float = 1.0
    table_store: str = "memory://"
    keep_full_ip: bool = False
    pixel_offload: bool = True
    max_body_bytes: int = 64 * 1024
    publish_timeout_seconds: float = 5.0
    edge_queue_max_messages: int = 100_000
    edge_delivery_timeout_seconds: float = 300.0
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_private_key_file: str = ""
    bounce_smtp_port: int = 2526
    trust_unattributed_bounces: bool = False
    bounce_max_bytes: int = 10 * 1024 * 1024
    bounce_keep_per_hour: int = 100
    bounce_keep_max_mb: int = 100
    sns_topic_arns: tuple[str, ...] = ()
    sendgrid_public_key: str = ""
    mailgun_signing_key: str = ""
    postmark_webhook_auth: str = ""
    webhook_max_age_seconds: int = 600
    sink_batch_size: int = 50_000
    sink_batch_seconds: float = 0.5
    sink_insert_attempts: int = 6
    sink_stuck_seconds: float = 120.0
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = Path(env.get("MAILPULSE_VAR_DIR") or "var").resolve()
        edge_host = env.get("MAILPULSE_EDGE_HOST") or "127.0.0.1"
        edge_port = _int(env, "MAILPULSE_EDGE_PORT", 8080, 1)
        secrets = _list(env, "MAILPULSE_SECRET_KEYS") or (DEV_SECRET_KEY,)
        dkim = [env.get(f"MAILPULSE_DKIM_{n}", "").strip() for n in ("SELECTOR", "DOMAIN", "PRIVATE_KEY_FILE")]
        if any(dkim) and not all(dkim):
            raise SettingsError(
                "DKIM needs all of MAILPULSE_DKIM_SELECTOR, MAILPULSE_DKIM_DOMAIN and MAILPULSE_DKIM_PRIVATE_KEY_FILE"
            )
        log_format = env.get("MAILPULSE_LOG_FORMAT") or "json"
        if log_format not in ("json", "text"):
            raise SettingsError(f"MAILPULSE_LOG_FORMAT must be json or text, got {log_format!r}")
        settings = cls(
            var_dir=var_dir,
            kafka_bootstrap=env.get("MAILPULSE_KAFKA_BOOTSTRAP", "").strip(),
            local_kafka_port=_int(env, "MAILPULSE_LOCAL_KAFKA_PORT", 9092, 1),
            topic_prefix=env.get("MAILPULSE_TOPIC_PREFIX") or "mailpulse",
            topic_partitions=_int(env, "MAILPULSE_TOPIC_PARTITIONS", 6, 1),
            replication_factor=_int(env, "MAILPULSE_REPLICATION_FACTOR", 1, 1),
            events_retention_ms=_int(env, "MAILPULSE_EVENTS_RETENTION_MS", 30 * 24 * 3600 * 1000, -1),
            clickhouse_url=env.get("MAILPULSE_CLICKHOUSE_URL") or f"chdb://{var_dir / 'clickhouse'}",
            clickhouse_analyst_url=env.get("MAILPULSE_CLICKHOUSE_ANALYST_URL", "").strip(),
            sql_max_seconds=_float(env, "MAILPULSE_SQL_MAX_SECONDS", 30.0),
            sql_max_rows=_int(env, "MAILPULSE_SQL_MAX_ROWS", 10_000, 1),
            sql_max_memory_mb=_int(env, "MAILPULSE_SQL_MAX_MEMORY_MB", 1024, 16),
            smtp_url=env.get("MAILPULSE_SMTP_URL") or "smtp://127.0.0.1:2525",
            smtp_sink_port=_int(env, "MAILPULSE_SMTP_SINK_PORT", 2525, 1),
            edge_host=edge_host,
            edge_port=edge_port,
            operator_port=_int(env, "MAILPULSE_OPERATOR_PORT", 8081, 1),
            sink_api_port=_int(env, "MAILPULSE_SINK_API_PORT", 8082, 1),
            worker_web_port=_int(env, "MAILPULSE_WORKER_WEB_PORT", 6066, 1),
            public_base_url=(env.get("MAILPULSE_PUBLIC_BASE_URL") or f"http://{edge_host}:{edge_port}").rstrip("/"),
            secret_keys=secrets,
            api_keys=_list(env, "MAILPULSE_API_KEYS"),
            environment=(env.get("MAILPULSE_ENV") or "production").strip().lower(),
            click_token_max_age_days=_int(env, "MAILPULSE_CLICK_TOKEN_MAX_AGE_DAYS", 0),
            unsubscribe_token_max_age_days=_int(env, "MAILPULSE_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS", 0),
            from_address=env.get("MAILPULSE_FROM_ADDRESS") or "Mailpulse Demo <news@example.com>",
            bounce_domain=env.get("MAILPULSE_BOUNCE_DOMAIN") or "bounces.example.com",
            unsubscribe_mailto=env.get("MAILPULSE_UNSUBSCRIBE_MAILTO") or "unsubscribe@example.com",
            soft_bounce_threshold=_int(env, "MAILPULSE_SOFT_BOUNCE_THRESHOLD", 3, 1),
            soft_bounce_window_days=_int(env, "MAILPULSE_SOFT_BOUNCE_WINDOW_DAYS", 7, 1),
            complaint_warning_rate=_float(env, "MAILPULSE_COMPLAINT_WARNING_RATE", 0.001),
            complaint_critical_rate=_float(env, "MAILPULSE_COMPLAINT_CRITICAL_RATE", 0.003),
            complaint_alert_min_delivered=_int(env, "MAILPULSE_COMPLAINT_ALERT_MIN_DELIVERED", 1000, 1),
            block_alert_rate=_float(env, "MAILPULSE_BLOCK_ALERT_RATE", 0.05),
            block_alert_window_seconds=_int(env, "MAILPULSE_BLOCK_ALERT_WINDOW_SECONDS", 600, 1),
            block_alert_min_attempts=_int(env, "MAILPULSE_BLOCK_ALERT_MIN_ATTEMPTS", 50, 1),
            smtp_sink_replies=env.get("MAILPULSE_SMTP_SINK_REPLIES", ""),
            max_send_attempts=_int(env, "MAILPULSE_MAX_SEND_ATTEMPTS", 5, 1),
            smtp_connections=_int(env, "MAILPULSE_SMTP_CONNECTIONS", 16, 1),
            smtp_pipelining=_bool(env, "MAILPULSE_SMTP_PIPELINING", True),
            send_batch_size=_int(env, "MAILPULSE_SEND_BATCH_SIZE", 2000, 1),
            domain_rate_limits=_rates(env, "MAILPULSE_DOMAIN_RATE_LIMITS"),
            domain_burst=_int(env, "MAILPULSE_DOMAIN_BURST", 10, 1),
            event_batch_size=_int(env, "MAILPULSE_EVENT_BATCH_SIZE", 1000, 1),
            worker_session_timeout_seconds=_float(env, "MAILPULSE_WORKER_SESSION_TIMEOUT_SECONDS", 10.0),
            retry_base_seconds=_float(env, "MAILPULSE_RETRY_BASE_SECONDS", 1.0),
            table_store=env.get("MAILPULSE_TABLE_STORE") or "memory://",
            keep_full_ip=_bool(env, "MAILPULSE_KEEP_FULL_IP", False),
            pixel_offload=_bool(env, "MAILPULSE_PIXEL_OFFLOAD", True),
            max_body_bytes=_int(env, "MAILPULSE_MAX_BODY_BYTES", 64 * 1024, 1024),
            publish_timeout_seconds=_float(env, "MAILPULSE_PUBLISH_TIMEOUT_SECONDS", 5.0),
            edge_queue_max_messages=_int(env, "MAILPULSE_EDGE_QUEUE_MAX_MESSAGES", 100_000, 1),
            edge_delivery_timeout_seconds=_float(env, "MAILPULSE_EDGE_DELIVERY_TIMEOUT_SECONDS", 300.0),
            dkim_selector=env.get("MAILPULSE_DKIM_SELECTOR", "").strip(),
            dkim_domain=env.get("MAILPULSE_DKIM_DOMAIN", "").strip(),
            dkim_private_key_file=env.get("MAILPULSE_DKIM_PRIVATE_KEY_FILE", "").strip(),
            bounce_smtp_port=_int(env, "MAILPULSE_BOUNCE_SMTP_PORT", 2526, 0),
            trust_unattributed_bounces=_bool(env, "MAILPULSE_TRUST_UNATTRIBUTED_BOUNCES", False),
            bounce_max_bytes=_int(env, "MAILPULSE_BOUNCE_MAX_BYTES", 10 * 1024 * 1024, 1024),
            bounce_keep_per_hour=_int(env, "MAILPULSE_BOUNCE_KEEP_PER_HOUR", 100),
            bounce_keep_max_mb=_int(env, "MAILPULSE_BOUNCE_KEEP_MAX_MB", 100),
            sns_topic_arns=_list(env, "MAILPULSE_SNS_TOPIC_ARNS"),
            sendgrid_public_key=env.get("MAILPULSE_SENDGRID_PUBLIC_KEY", "").strip(),
            mailgun_signing_key=env.get("MAILPULSE_MAILGUN_SIGNING_KEY", "").strip(),
            postmark_webhook_auth=env.get("MAILPULSE_POSTMARK_WEBHOOK_AUTH", "").strip(),
            webhook_max_age_seconds=_int(env, "MAILPULSE_WEBHOOK_MAX_AGE_SECONDS", 600, 1),
            sink_batch_size=_int(env, "MAILPULSE_SINK_BATCH_SIZE", 50_000, 1),
            sink_batch_seconds=_float(env, "MAILPULSE_SINK_BATCH_SECONDS", 0.5),
            sink_insert_attempts=_int(env, "MAILPULSE_SINK_INSERT_ATTEMPTS", 6, 1),
            sink_stuck_seconds=_float(env, "MAILPULSE_SINK_STUCK_SECONDS", 120.0),
            log_level=(env.get("MAILPULSE_LOG_LEVEL") or "INFO").upper(),
            log_format=log_format,
        )
        if settings.environment not in ("production", "development"):
            raise SettingsError(f"MAILPULSE_ENV must be production or development, got {settings.environment!r}")
        if 0 < settings.unsubscribe_token_max_age_days < MIN_UNSUBSCRIBE_DAYS:
            # CAN-SPAM: an unsubscribe link must work for at least 30 days after the message was sent.
            raise SettingsError(
                f"MAILPULSE_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS must be 0 (no limit) or >= {MIN_UNSUBSCRIBE_DAYS}"
            )
        if settings.sql_max_seconds <= 0:
            # ClickHouse reads 0 as "no limit": an analyst's statement must always have one.
            raise SettingsError("MAILPULSE_SQL_MAX_SECONDS must be above 0")
        return settings

    @property
    def uses_local_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def uses_embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    @property
    def uses_dev_secret(self) -> bool:
        return DEV_SECRET_KEY in self.secret_keys

    def refuse_development_secret(self) -> None:
        """SettingsError unless the secrets are the operator's own, or this is a development stack.

        With the published development key anyone can mint unsubscribe and click tokens.
        """
        if self.uses_dev_secret and self.environment != "development":
            raise SettingsError(
                "MAILPULSE_SECRET_KEYS is unset or holds the published development key, so anyone "
                "could forge unsubscribe and click links; set your own secret (or MAILPULSE_ENV=development "
                "for a local stack)"
            )
