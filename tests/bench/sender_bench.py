"""Sender throughput into Postfix's smtp-sink (Debian's postfix package): the worker (outbox -> suppression
gate -> render -> pooled aiosmtplib -> events) beside a bare aiosmtplib loop sending the same rendered
messages over as many connections, and the unsubscribe-to-suppression latency while a campaign sends."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from confluent_kafka import Producer

from processors.courier import render_context
from processors.render import render_message
from schemas.codec import encode
from schemas.events import SendRequest, SuppressionAdded, Unsubscribe, UnsubscribeScope, message_id_for, utcnow
from schemas.kafka_config import producer_config
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.topics import Topics
from tests.bench.common import Row, print_table, say
from tests.bench.processor_bench import Isolated, wait_ready
from tests.bench.sink_bench import produce_all
from tests.support.worker_process import Worker

SINK_PORT = 25255
SMTP_SINK = Path("/usr/sbin/smtp-sink")
# The bench asks the worker over HTTP, and each answer costs the worker's loop what a few messages do:
# progress every 100 ms (the rate's end points are that exact, on runs of ten seconds and more), and an
# unsubscribe's suppression every 10 ms (the latency's resolution; its goal is 1 s).
POLL_PROGRESS_SECONDS = 0.1
POLL_SUPPRESSION_SECONDS = 0.01


class PostfixSink:
    """Postfix's smtp-sink: accepts and discards mail as fast as SMTP goes (C, event-driven)."""

    def __init__(self, port: int) -> None:
        if not SMTP_SINK.exists():
            raise RuntimeError("Postfix's smtp-sink is missing: `make bench-deps` installs Debian's postfix")
        self.port = port
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [str(SMTP_SINK), *user, "-m", "1000", f"127.0.0.1:{port}", "1000"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def requests(campaign: str, count: int) -> list[SendRequest]:
    html = "<html><body><p>Hello $first_name</p><a href='https://example.com/offer'>offer</a></body></html>"
    return [
        SendRequest(
            message_id=message_id_for(campaign, f"reader{i}@bench.example"),
            campaign_id=campaign,
            recipient=f"reader{i}@bench.example",
            list_id="news",
            from_address="Bench <news@example.com>",
            subject="Bench mail",
            html=html,
            text="Hello, see https://example.com/offer",
            enqueued_at=utcnow(),
        )
        for i in range(count)
    ]


def bare_loop(settings: Settings, batch: list[SendRequest], connections: int) -> float:
    """aiosmtplib alone: the same rendered messages over ``connections`` reused connections."""
    ctx = render_context(settings)
    rendered = [render_message(r, ctx) for r in batch]

    async def run() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(rendered)):
            queue.put_nowait(i)

        async def connection() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=SINK_PORT)
            await client.connect()
            while not queue.empty():
                message = rendered[queue.get_nowait()]
                await client.sendmail(message.envelope_from, [message.recipient], message.data)
            await client.quit()

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(connections)))
        return len(rendered) / (time.perf_counter() - started)

    return asyncio.run(run())


def pipeline(settings: Settings, run: int, count: int, suppressed: int, unsubscribes: int) -> tuple[float, list[float]]:
    """Messages/s through the worker, and unsubscribe-to-suppression latencies (ms) measured meanwhile."""
    app = Isolated(settings, f"send{run}", "memory://")
    app.env["MAILPULSE_SMTP_URL"] = f"smtp://127.0.0.1:{SINK_PORT}"
    app.settings = Settings.from_env(app.env)
    campaign = f"bench-send-{run}"
    batch = requests(campaign, count)
    # Some of the audience is suppressed already: the gate really has something to stop.
    gone = [
        SuppressionAdded(
            event_id=f"gone-{run}-{i}",
            occurred_at=datetime.now(UTC),
            campaign_id="",
            message_id="",
            recipient=batch[i].recipient,
        )
        for i in range(0, count, max(1, count // suppressed))
    ]
    app.publish(gone)  # type: ignore[arg-type]
    outbox = Topics.for_prefix(app.prefix).outbox
    worker = app.worker()
    latencies: list[float] = []
    try:
        wait_ready(worker)
        produce_all(app.settings, outbox, [(r.recipient.encode(), encode(r)) for r in batch])
        expected = count - len(gone)
        first = 0.0
        stop = threading.Event()
        thread = threading.Thread(target=measure_unsubscribes, args=(app, worker, unsubscribes, latencies, stop))
        started_unsubscribing = False
        deadline = time.monotonic() + 600
        last = -1.0
        shown = time.monotonic()
        while True:
            sent = worker.sends("sent")
            now = time.monotonic()
            if sent and not first:
                first = now
            if sent and not started_unsubscribing:
                thread.start()
                started_unsubscribing = True
            if sent >= expected:
                break
            if now > deadline:
                raise RuntimeError(f"only {sent:,.0f}/{expected:,} sent; see {worker.log}")
            if now - shown > 2 and sent != last:
                say(f"      run {run}: {sent:,.0f}/{expected:,} sent")
                shown, last = now, sent
            time.sleep(POLL_PROGRESS_SECONDS)
        elapsed = time.monotonic() - first
        stop.set()
        if started_unsubscribing:
            thread.join(60)
        # Messages the delivery process gave back unsent (their recipient suppressed, their partition behind,
        # or their check too old when a sender came to them): each was checked and handed over again.
        given_back = worker.metric("mailpulse_worker_handoff_waits_total")
        say(f"      run {run}: {given_back:,.0f} hand-offs given back and handed over again")
    finally:
        worker.stop()
    shutil.rmtree(app.root, ignore_errors=True)  # kept when the run failed: its worker log tells why
    return expected / elapsed, latencies


def measure_unsubscribes(app: Isolated, worker: Worker, count: int, out: list[float], stop: threading.Event) -> None:
    """One-click unsubscribes published as the edge does (acks=all), timed until the worker's table has them."""
    producer = Producer(producer_config(app.settings))
    events = Topics.for_prefix(app.prefix).events
    for i in range(count):
        if stop.is_set():
            break
        address = f"leaver{i}-{time.time_ns()}@bench.example"
        event = Unsubscribe(
            event_id=f"unsub-{i}-{time.time_ns()}",
            occurred_at=utcnow(),
            campaign_id="bench",
            message_id=f"leaver-{i}",
            recipient=address,
            list_id="news",
            scope=UnsubscribeScope.ALL,
        )
        producer.produce(events, key=recipient_key(address, "bench"), value=encode(event))
        producer.flush(30)  # acknowledged by every in-sync replica, as the edge waits before its 200
        acknowledged = time.perf_counter()
        while True:
            answer = worker.get(f"/suppression/{address}")
            if answer is not None and answer.status_code == 200 and answer.json()["suppressed"]:
                break
            if time.perf_counter() - acknowledged > 30:
                raise RuntimeError(f"unsubscribe of {address} not applied after 30 s")
            time.sleep(POLL_SUPPRESSION_SECONDS)
        out.append((time.perf_counter() - acknowledged) * 1000)
        time.sleep(0.05)


def main(settings: Settings, quick: bool) -> None:
    count = 3_000 if quick else 20_000
    connections = settings.smtp_connections
    sink = PostfixSink(SINK_PORT)
    try:
        say(f"  sender: {count:,} messages a run into Postfix smtp-sink, {connections} connections, alternating")
        bare_rates, pipe_rates, latencies = [], [], []
        for run in range(1, 4):
            bare_rates.append(bare_loop(settings, requests(f"bare-{run}", count), connections))
            say(f"    bare aiosmtplib loop: run {run}/3: {bare_rates[-1]:,.1f} msg/s")
            rate, lat = pipeline(settings, run, count, suppressed=count // 20, unsubscribes=200)
            pipe_rates.append(rate)
            latencies += lat
            say(f"    worker with suppression gate: run {run}/3: {rate:,.1f} msg/s ({len(lat)} unsubscribes timed)")
    finally:
        sink.stop()
    bare, pipe = statistics.median(bare_rates), statistics.median(pipe_rates)
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    print_table(
        "sender (into Postfix smtp-sink)",
        [
            Row("bare aiosmtplib send loop", bare, "msg/s"),
            Row("worker: outbox -> gate -> render -> SMTP -> events", pipe, "msg/s", ">= 500", pipe >= 500),
            Row("worker / bare ratio", pipe / bare, "", ">= 0.7", pipe / bare >= 0.7),
            Row(f"unsubscribe -> suppression p50 ({len(latencies)} during sends)", p50, "ms"),
            Row("unsubscribe -> suppression p99", p99, "ms", "< 1,000", p99 < 1000),
        ],
    )
