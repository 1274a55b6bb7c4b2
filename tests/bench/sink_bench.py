"""Sink throughput (Kafka -> chdb through the sink's consumer) against a bare clickhouse-connect insert of the
same rows. Report latency has a suite of its own (:mod:`tests.bench.report_bench`)."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from schemas.codec import decode_event, encode
from schemas.events import AgentClass, AnyEvent, Click, Open, Sent
from schemas.kafka_config import producer_config
from schemas.keys import recipient_key
from schemas.settings import Settings
from sinks.consumer import TableSink, tune_gc_for_batches
from sinks.migrate import migrate
from sinks.rows import COLUMNS, EVENTS, Row, event_to_row
from sinks.store import EventStore
from tests.bench.common import Row as Result
from tests.bench.common import fresh_topic, median_of, print_table, say


def make_events(campaign: str, count: int) -> list[AnyEvent]:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    events: list[AnyEvent] = []
    i = 0
    while len(events) < count:
        base = {
            "occurred_at": start + timedelta(seconds=i),
            "campaign_id": campaign,
            "message_id": f"m{i}",
            "recipient": f"user{i}@example.org",
            "list_id": "news",
        }
        events.append(Sent(event_id=f"{campaign}-s{i}", smtp_reply="2.0.0 OK", **base))  # type: ignore[arg-type]
        events.append(
            Open(
                event_id=f"{campaign}-o{i}",
                user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/131",
                client_ip="203.0.113.0",
                **base,
            )
        )  # type: ignore[arg-type]
        if i % 3 == 0:
            events.append(
                Open(event_id=f"{campaign}-a{i}", user_agent="Mozilla/5.0", agent_class=AgentClass.APPLE_MPP, **base)
            )  # type: ignore[arg-type]
        if i % 4 == 0:
            events.append(Click(event_id=f"{campaign}-c{i}", url="https://example.com/sale", **base))  # type: ignore[arg-type]
        i += 1
    return events[:count]


def produce_all(settings: Settings, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(settings, **{"linger.ms": 50, "batch.size": 1_000_000}))
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError("bench records not acknowledged")


def run(settings: Settings, rows_per_run: int, runs: int) -> list[Result]:
    store = EventStore(settings.clickhouse_url)
    migrate(store)
    topic = f"{settings.topic_prefix}.sink-bench"
    fresh_topic(settings, topic)
    events = make_events("bench-sink", rows_per_run)
    payloads = [(recipient_key(e.recipient, e.campaign_id), encode(e)) for e in events]
    say(f"  producing {len(payloads):,} events to {topic}")
    produce_all(settings, topic, payloads)
    # The bare side inserts the same events as clickhouse-connect column tuples (what the sink did before
    # it handed ClickHouse JSON lines), already mapped: only the insert is timed.
    rows: list[Row] = [event_to_row(decode_event(value), 0, n) for n, (_, value) in enumerate(payloads)]
    # For reference, the sink's own insert path alone: the same events as its JSON lines, no Kafka.
    lines = [EVENTS.to_row(value, 0, n) for n, (_, value) in enumerate(payloads)]
    tune_gc_for_batches()  # as the sink service does; applies to both sides of the comparison
    batch = settings.sink_batch_size

    # CPU seconds of this process per row (chdb runs in it, as it runs in the sink's process).
    cpu_per_row: dict[str, list[float]] = {"bare": [], "pipeline": []}

    def bare(run_number: int) -> float:
        store.command("TRUNCATE TABLE events")
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), batch):
            store.insert("events", COLUMNS, rows[i : i + batch])
        cpu_per_row["bare"].append((time.process_time() - cpu) / len(rows))
        return len(rows) / (time.perf_counter() - started)

    def bare_json() -> float:
        store.command("TRUNCATE TABLE events")
        started = time.perf_counter()
        for i in range(0, len(lines), batch):
            store.write(EVENTS, lines[i : i + batch])
        return len(lines) / (time.perf_counter() - started)

    def pipeline(run_number: int) -> float:
        store.command("TRUNCATE TABLE events")
        inserted = {"rows": 0, "first": 0.0, "last": 0.0}
        done = threading.Event()

        def on_insert(count: int, seconds: float) -> None:
            now = time.perf_counter()
            if not inserted["first"]:
                inserted["first"] = now - seconds
            inserted["rows"] += count
            inserted["last"] = now
            if inserted["rows"] >= len(rows):
                done.set()

        processor = TableSink(settings, store, EVENTS, topic, f"bench-sink-{time.time_ns()}", on_insert)
        thread = threading.Thread(target=processor.run, daemon=True)
        started, cpu = time.perf_counter(), time.process_time()
        thread.start()
        if not done.wait(300):
            raise RuntimeError("pipeline did not insert every row")
        # The group join and the first fetch included: what the sink's process spent on these rows.
        cpu_per_row["pipeline"].append((time.process_time() - cpu) / len(rows))
        # From the first record fetched (after the group join) to the last insert committed.
        elapsed = inserted["last"] - (processor.first_fetch or started)
        processor.signal_shutdown()
        thread.join(30)
        return len(rows) / elapsed

    say(f"  sink: {len(rows):,} rows a run, batches of {batch:,}, {runs} runs each, alternating")
    pairs: list[tuple[float, float]] = []
    json_ratios: list[float] = []

    def alternate(run: int) -> float:
        plain, json_lines, piped = bare(run), bare_json(), pipeline(run)
        pairs.append((plain, piped))
        json_ratios.append(piped / json_lines)
        say(
            f"    run {run}: bare insert {plain:,.0f} rows/s, bare JSON-lines insert {json_lines:,.0f} rows/s, "
            f"Kafka -> sink -> chdb {piped:,.0f} rows/s"
        )
        return piped / plain

    ratio = median_of(runs, alternate, "sink / bare ratio")
    bare_rate = statistics.median(p[0] for p in pairs)
    pipe_rate = statistics.median(p[1] for p in pairs)

    return [
        Result("bare clickhouse-connect insert", bare_rate, "rows/s"),
        Result("Kafka -> sink -> chdb", pipe_rate, "rows/s", ">= 100,000", pipe_rate >= 100_000),
        Result("sink / bare ratio (median of alternated runs)", ratio, "", ">= 0.8", ratio >= 0.8),
        Result("sink / its own insert path without Kafka (reference)", statistics.median(json_ratios), ""),
        Result("CPU per row, bare insert", statistics.median(cpu_per_row["bare"]) * 1e6, "µs"),
        Result(
            "CPU per row, Kafka -> sink -> chdb (the sink's process)",
            statistics.median(cpu_per_row["pipeline"]) * 1e6,
            "µs",
        ),
    ]


def main(settings: Settings, quick: bool) -> None:
    results = run(
        settings,
        rows_per_run=100_000 if quick else 400_000,
        runs=3 if quick else 5,
    )
    print_table("Sink: Kafka -> ClickHouse (chdb)", results)
