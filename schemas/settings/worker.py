"""Settings of the worker: suppression and alerts, the sender and its relay, faust's tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.settings.declare import Service, base_url, integer, rates, setting

WORKER, EDGE, CLI, STACK = Service.WORKER, Service.EDGE, Service.CLI, Service.STACK


def _edge_url(values: Mapping[str, Any]) -> str:
    return f"http://{values['edge_host']}:{values['edge_port']}"


@dataclass(frozen=True)
class WorkerSettings:
    worker_web_port: int = setting(
        "WORKER_WEB_PORT",
        6066,
        "port of the worker's views (lookups, live stats, health, metrics)",
        read_by=(WORKER, CLI, STACK),
        parse=integer(1),
    )
    public_base_url: str = setting(
        "PUBLIC_BASE_URL",
        "",
        "base of the tracking and unsubscribe links in mail",
        read_by=(WORKER,),
        parse=base_url,
        derive=_edge_url,
        shown="`http://EDGE_HOST:EDGE_PORT`",
    )
    unsubscribe_domain: str = setting(
        "UNSUBSCRIBE_DOMAIN",
        "",
        "domain of each message's mailto: unsubscribe address (`unsubscribe+<token>@DOMAIN`); point its MX at "
        "the edge's SMTP receiver",
        read_by=(WORKER, EDGE),
        derive=lambda values: values["bounce_domain"],
        shown="the bounce domain",
    )
    soft_bounce_threshold: int = setting(
        "SOFT_BOUNCE_THRESHOLD",
        3,
        "soft bounces that suppress an address (consecutive, or within the window)",
        read_by=(WORKER,),
        parse=integer(1),
    )
    soft_bounce_window_days: int = setting(
        "SOFT_BOUNCE_WINDOW_DAYS", 7, "the soft-bounce window", read_by=(WORKER,), parse=integer(1)
    )
    trust_unattributed_bounces: bool = setting(
        "TRUST_UNATTRIBUTED_BOUNCES",
        False,
        "let bounce and complaint mail not tied to a message sent to its recipient suppress (recorded either way)",
        read_by=(WORKER,),
    )
    complaint_warning_rate: float = setting(
        "COMPLAINT_WARNING_RATE", 0.001, "complaint rate over delivered mail that raises a warning", read_by=(WORKER,)
    )
    complaint_critical_rate: float = setting(
        "COMPLAINT_CRITICAL_RATE", 0.003, "complaint rate that raises a critical alert", read_by=(WORKER,)
    )
    complaint_alert_min_delivered: int = setting(
        "COMPLAINT_ALERT_MIN_DELIVERED",
        1000,
        "delivered messages a campaign needs before its complaint rate is judged",
        read_by=(WORKER,),
        parse=integer(1),
    )
    block_alert_rate: float = setting(
        "BLOCK_ALERT_RATE",
        0.05,
        "share of a campaign's attempts at one domain refused for the sender's sake that raises a block alert",
        read_by=(WORKER,),
    )
    block_alert_window_seconds: int = setting(
        "BLOCK_ALERT_WINDOW_SECONDS", 600, "the sliding window of the block rate", read_by=(WORKER,), parse=integer(1)
    )
    block_alert_min_attempts: int = setting(
        "BLOCK_ALERT_MIN_ATTEMPTS",
        50,
        "attempts at a domain within the window before its block rate is judged",
        read_by=(WORKER,),
        parse=integer(1),
    )
    auto_pause: bool = setting(
        "AUTO_PAUSE",
        True,
        "pause a campaign by itself when its complaint rate crosses the critical line, or its block rate at a "
        "receiving domain crosses `MAILPULSE_AUTO_PAUSE_BLOCK_RATE`",
        read_by=(WORKER,),
    )
    auto_pause_block_rate: float = setting(
        "AUTO_PAUSE_BLOCK_RATE",
        0.2,
        "share of a campaign's attempts at one domain refused for the sender's sake (over the block alert's "
        "window and minimum) that pauses the campaign",
        read_by=(WORKER,),
    )
    smtp_url: str = setting(
        "SMTP_URL",
        "smtp://127.0.0.1:2525",
        "the relay: `smtp://` (STARTTLS if offered), `smtp+starttls://`, `smtps://`; `user:pass@` for AUTH",
        read_by=(WORKER, STACK),
    )
    smtp_connections: int = setting(
        "SMTP_CONNECTIONS",
        16,
        "SMTP connections the delivery process keeps open (two senders take turns on each)",
        read_by=(WORKER,),
        parse=integer(1),
    )
    smtp_pipelining: bool = setting(
        "SMTP_PIPELINING", True, "pipeline each transaction (RFC 2920) when the relay offers it", read_by=(WORKER,)
    )
    send_batch_size: int = setting(
        "SEND_BATCH_SIZE",
        2000,
        "send requests the sender takes at once (two batches in hand)",
        read_by=(WORKER,),
        parse=integer(1),
    )
    max_send_attempts: int = setting(
        "MAX_SEND_ATTEMPTS", 5, "attempts before a deferred message fails", read_by=(WORKER,), parse=integer(1)
    )
    retry_base_seconds: float = setting(
        "RETRY_BASE_SECONDS",
        1.0,
        "backoff base: attempt n waits base * 2^(n-1), jittered to 50-100 %",
        read_by=(WORKER,),
    )
    domain_rate_limits: tuple[tuple[str, float], ...] = setting(
        "DOMAIN_RATE_LIMITS",
        (),
        "messages/s per recipient domain, e.g. `gmail.com=50,*=100` (`*`: every other)",
        read_by=(WORKER,),
        parse=rates,
    )
    domain_burst: int = setting(
        "DOMAIN_BURST",
        10,
        "sends to one domain that may go at once before its rate applies",
        read_by=(WORKER,),
        parse=integer(1),
    )
    event_batch_size: int = setting(
        "EVENT_BATCH_SIZE",
        1000,
        "events (and campaign partials) the worker applies at once",
        read_by=(WORKER,),
        parse=integer(1),
    )
    worker_session_timeout_seconds: float = setting(
        "WORKER_SESSION_TIMEOUT_SECONDS",
        10.0,
        "how soon a dead worker's partitions move to another worker",
        read_by=(WORKER,),
    )
    table_store: str = setting(
        "TABLE_STORE",
        "memory://",
        "faust's table store: `rocksdb://` keeps tables on disk and restarts from them",
        read_by=(WORKER,),
    )
    standby_replicas: int = setting(
        "STANDBY_REPLICAS",
        1,
        "copies of each table partition other workers keep warm from its changelog, ready to take over",
        read_by=(WORKER,),
        parse=integer(0),
    )
    dkim_selector: str = setting(
        "DKIM_SELECTOR", "", "DKIM selector (all three DKIM settings, or none)", read_by=(WORKER,)
    )
    dkim_domain: str = setting("DKIM_DOMAIN", "", "DKIM signing domain", read_by=(WORKER,))
    dkim_private_key_file: str = setting("DKIM_PRIVATE_KEY_FILE", "", "PEM file of the DKIM key", read_by=(WORKER,))
