"""Settings of the local stack: the broker and the SMTP sink `mailpulse up` starts when nothing else is named."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.settings.declare import ALL, Service, integer, setting

STACK, CLI = Service.STACK, Service.CLI


@dataclass(frozen=True)
class LocalStackSettings:
    local_kafka_port: int = setting(
        "LOCAL_KAFKA_PORT",
        9092,
        "port of the local broker (its controller listens on the next one)",
        read_by=(STACK, CLI),
        parse=integer(1),
    )
    local_kafka_brokers: int = setting(
        "LOCAL_KAFKA_BROKERS",
        1,
        "brokers of the local cluster (KRaft; the first three are also its controllers), on ports two apart "
        "from the local port; every service's bootstrap list names them all",
        read_by=ALL,
        parse=integer(1),
    )
    workers: int = setting(
        "WORKERS",
        1,
        "workers `mailpulse up` starts (the second on the worker's port + 10, and so on; each its own tables)",
        read_by=(STACK,),
        parse=integer(1),
    )
    sinks: int = setting(
        "SINKS",
        1,
        "sinks `mailpulse up` starts (query API ports 10 apart); more than one needs a ClickHouse server",
        read_by=(STACK,),
        parse=integer(1),
    )
    edges: int = setting(
        "EDGES",
        1,
        "edges `mailpulse up` starts, each on the edge's, operator's and bounce receiver's ports + 10 (i - 1)",
        read_by=(STACK,),
        parse=integer(1),
    )
    smtp_sink_port: int = setting(
        "SMTP_SINK_PORT",
        2525,
        "port of the local SMTP sink (started only when the relay URL points at it)",
        read_by=(STACK,),
        parse=integer(1),
    )
    smtp_sink_replies: str = setting(
        "SMTP_SINK_REPLIES",
        "",
        "a file of answers for the local SMTP sink, `pattern<TAB>rcpt|data<TAB>reply` a line",
        read_by=(STACK,),
    )
