"""Settings every part reads: where data lives, the broker and its topics, secrets and keys, logs."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.settings.declare import ALL, Service, choice, integer, setting, upper

EDGE, WORKER, SINK, CLI, STACK = Service.EDGE, Service.WORKER, Service.SINK, Service.CLI, Service.STACK
DEV_SECRET_KEY = "mailpulse-dev-only-secret-change-me"


def _advertised(values: Mapping[str, Any]) -> str:
    host = str(values["private_host"])
    return socket.gethostname() if host in ("0.0.0.0", "::") else host


def min_insync_replicas(copies: int) -> int:
    """Copies a write needs (acks=all): with three, one broker may be lost without losing an acknowledged
    record or refusing writes."""
    return 2 if copies >= 3 else 1


@dataclass(frozen=True)
class CommonSettings:
    var_dir: Path = setting(
        "VAR_DIR",
        Path("var"),
        "data of the local stack: Kafka log dirs, chdb data, Maildir, logs, pids (relative to the working directory)",
        read_by=ALL,
        derive=lambda values: Path("var").resolve(),
    )
    kafka_bootstrap: str = setting(
        "KAFKA_BOOTSTRAP", "", "an existing cluster's bootstrap servers; when set, no local broker starts", read_by=ALL
    )
    private_host: str = setting(
        "PRIVATE_HOST",
        "127.0.0.1",
        "address the operator edge, the worker's views and the sink's query API listen on: this machine alone, "
        "or `0.0.0.0` on a private network (a container's)",
        read_by=(EDGE, WORKER, SINK),
    )
    worker_advertised_host: str = setting(
        "WORKER_ADVERTISED_HOST",
        "",
        "the name other workers reach this one's views by (a lookup asks the worker holding the key)",
        read_by=(WORKER,),
        derive=_advertised,
        shown="PRIVATE_HOST, or the host name when that is `0.0.0.0`",
    )
    topic_prefix: str = setting(
        "TOPIC_PREFIX", "mailpulse", "prefix of every topic and of the worker's app id", read_by=ALL
    )
    topic_partitions: int = setting(
        "TOPIC_PARTITIONS",
        6,
        "partitions of every topic (all equal: co-partitioning)",
        read_by=(WORKER, STACK, CLI),
        parse=integer(1),
    )
    replication_factor: int = setting(
        "REPLICATION_FACTOR",
        1,
        "copies of each created topic (with 3 or more, a write needs 2 in sync: `min.insync.replicas`)",
        read_by=(WORKER, STACK, CLI),
        parse=integer(1),
        derive=lambda values: 1 if values["kafka_bootstrap"] else min(values["local_kafka_brokers"], 3),
        shown="min(local brokers, 3); 1 with MAILPULSE_KAFKA_BOOTSTRAP",
    )
    events_retention_ms: int = setting(
        "EVENTS_RETENTION_MS",
        30 * 24 * 3600 * 1000,
        "retention of the non-compacted topics (-1: forever)",
        read_by=(STACK, CLI),
        parse=integer(-1),
        shown="30 days",
    )
    secret_keys: tuple[str, ...] = setting(
        "SECRET_KEYS",
        (DEV_SECRET_KEY,),
        "comma-separated secrets: the first mints links and VERP addresses, all verify; the published development "
        "key is refused unless `MAILPULSE_ENV=development`",
        read_by=(EDGE, WORKER),
        shown="the published development key",
    )
    api_keys: tuple[str, ...] = setting(
        "API_KEYS",
        (),
        "comma-separated operator API keys (none: operator routes closed); `mailpulse up` makes one "
        "for the local stack when unset",
        read_by=(EDGE, WORKER, SINK, CLI, STACK),
    )
    environment: str = setting(
        "ENV",
        "production",
        "`development` lets a local stack run on the development secret",
        read_by=(EDGE, WORKER),
        parse=choice("production", "development"),
    )
    log_level: str = setting(
        "LOG_LEVEL", "INFO", "log level of the services", read_by=(EDGE, WORKER, SINK), parse=upper
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "json",
        "service logs as JSON lines or text",
        read_by=(EDGE, WORKER, SINK, STACK),
        parse=choice("json", "text"),
    )
