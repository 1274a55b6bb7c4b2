"""Shared bench plumbing: a local broker for benchmarks, progress, medians and the result table."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from mailpulse.localkafka import LocalKafka
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BENCH_ENV = {
    # A throwaway stack on the development secret.
    "MAILPULSE_ENV": "development",
    "MAILPULSE_VAR_DIR": str(ROOT / "var" / "bench"),
    "MAILPULSE_LOCAL_KAFKA_PORT": "29092",
    "MAILPULSE_TOPIC_PREFIX": "bench",
    "MAILPULSE_KAFKA_BOOTSTRAP": "",
    "MAILPULSE_CLICKHOUSE_URL": "",
}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Row:
    name: str
    value: float
    unit: str
    goal: str = ""
    ok: bool | None = None


def median_of(runs: int, measure: Callable[[int], float], label: str) -> float:
    values = []
    for run in range(1, runs + 1):
        value = measure(run)
        values.append(value)
        shown = f"{value:,.3f}" if value < 10 else f"{value:,.1f}"  # ratios need their decimals
        say(f"    {label}: run {run}/{runs}: {shown}")
    return statistics.median(values)


def bench_settings() -> Settings:
    os.environ.update(BENCH_ENV)
    return Settings.from_env()


def start_broker(settings: Settings) -> LocalKafka:
    """A bench broker on empty storage. Each run makes topics of its own; kept from run to run, they
    added up (some 20,000 partitions after many runs) until the broker ran out of file descriptors
    mid-bench."""
    kafka = LocalKafka.from_settings(settings)
    kafka.stop()  # one left behind by an interrupted run
    shutil.rmtree(kafka.home, ignore_errors=True)
    say(f"  starting a bench broker on empty storage, 127.0.0.1:{settings.local_kafka_port}")
    kafka.start()
    return kafka


def fresh_topic(settings: Settings, name: str, partitions: int = 6) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    if name in admin.list_topics(timeout=10).topics:
        admin.delete_topics([name])[name].result(30)
        while name in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
        time.sleep(1.0)
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}\n")
    print("| metric | median | unit | goal | met |")
    print("| --- | ---: | --- | --- | --- |")
    for row in rows:
        met = "" if row.ok is None else ("yes" if row.ok else "NO")
        print(f"| {row.name} | {row.value:,.3f} | {row.unit} | {row.goal} | {met} |")
    sys.stdout.flush()
