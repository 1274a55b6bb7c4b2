"""Worker benchmarks: events/s through the suppression and engagement agent on one worker, suppression
lookups with a million entries, the worker's peak RSS holding them, and the time to recover them.

Every measurement starts a real ``mailpulse worker`` process on an app and topics of its own.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailpulse.topics_admin import ensure_topics
from schemas.codec import encode
from schemas.events import AgentClass, AnyEvent, Bounce, BounceClass, Click, Open, Sent, SuppressionAdded, Unsubscribe
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.topics import Topics
from tests.bench.common import Row, print_table, say
from tests.bench.sink_bench import produce_all
from tests.support.worker_process import Worker

PORT = 26066


def campaign_events(count: int, seed: int) -> list[AnyEvent]:
    """A realistic mix: sends, opens (human and proxy), clicks, a few unsubscribes and bounces."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 8, tzinfo=UTC)
    events: list[AnyEvent] = []
    i = 0
    while len(events) < count:
        base: dict[str, Any] = {
            "campaign_id": f"bench-{i % 20}",
            "message_id": f"m{seed}-{i}",
            "recipient": f"user{i}@bench.example",
            "list_id": "news",
        }
        at = start + timedelta(seconds=i)
        events.append(Sent(event_id=f"{seed}-s{i}", occurred_at=at, **base))
        for n in range(rng.choice([0, 1, 1, 2])):
            agent = rng.choice([AgentClass.HUMAN, AgentClass.APPLE_MPP])
            events.append(Open(event_id=f"{seed}-o{i}-{n}", occurred_at=at, agent_class=agent, **base))
        if rng.random() < 0.2:
            events.append(Click(event_id=f"{seed}-c{i}", occurred_at=at, url="https://example.com/", **base))
        if rng.random() < 0.02:
            events.append(Unsubscribe(event_id=f"{seed}-u{i}", occurred_at=at, **base))
        if rng.random() < 0.02:
            events.append(Bounce(event_id=f"{seed}-b{i}", occurred_at=at, bounce_class=BounceClass.HARD, **base))
        i += 1
    return events[:count]


def manual_suppressions(count: int) -> list[AnyEvent]:
    at = datetime(2026, 11, 20, 8, tzinfo=UTC)
    return [
        SuppressionAdded(
            event_id=f"sup-{i}", occurred_at=at, campaign_id="", message_id="", recipient=f"gone{i}@bench.example"
        )
        for i in range(count)
    ]


class Isolated:
    """An app of its own: topic prefix, consumer group and data dirs."""

    def __init__(self, settings: Settings, name: str, store: str) -> None:
        self.prefix = f"{settings.topic_prefix}-{name}-{time.time_ns()}"
        self.root = settings.var_dir / "processor-bench" / self.prefix
        self.env = {
            **os.environ,
            "MAILPULSE_TOPIC_PREFIX": self.prefix,
            "MAILPULSE_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "MAILPULSE_TABLE_STORE": store,
            "MAILPULSE_VAR_DIR": str(self.root),
            "MAILPULSE_WORKER_WEB_PORT": str(PORT),
            "MAILPULSE_LOG_LEVEL": "WARNING",
            "MAILPULSE_API_KEYS": "bench-key",
        }
        self.settings = Settings.from_env(self.env)
        ensure_topics(self.settings)

    def publish(self, events: list[AnyEvent]) -> None:
        topic = Topics.for_prefix(self.prefix).events
        produce_all(self.settings, topic, [(recipient_key(e.recipient, e.campaign_id), encode(e)) for e in events])

    def worker(self) -> Worker:
        return Worker(self.env, "worker").start()

    def wipe_local_state(self) -> None:
        shutil.rmtree(self.root / "faust", ignore_errors=True)


def wait_ready(worker: Worker, timeout: float = 600) -> float:
    started = time.monotonic()
    while not worker.ready():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"worker not ready after {timeout:.0f}s; see {worker.log}")
        time.sleep(0.1)
    return time.monotonic() - started


def consume_all(worker: Worker, total: int, label: str) -> float:
    """Events/s from the first event read to the last, watching the worker's own counter."""
    first = last_progress = 0.0
    read = 0.0
    deadline = time.monotonic() + 1800
    while read < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: only {read:,.0f}/{total:,} events read; see {worker.log}")
        read = worker.events_read()
        now = time.monotonic()
        if read and not first:
            first = now
        if now - last_progress > 2:
            say(f"      {label}: {read:,.0f}/{total:,} events read")
            last_progress = now
        time.sleep(0.05)
    return total / (time.monotonic() - first)


STORES = ("memory://", "rocksdb://")


def throughput(settings: Settings, count: int) -> tuple[dict[str, float], float]:
    """Our worker on each store and a do-nothing faust agent over the same events, alternating, 3 runs
    each: the medians per store, and the agent's."""
    topics: list[Isolated] = []

    def measure(run: int, store: str) -> float:
        app = Isolated(settings, f"tp{run}{store[:3]}", store)
        app.publish(campaign_events(count, run))
        topics.append(app)
        worker = app.worker()
        try:
            wait_ready(worker)
            return consume_all(worker, count, f"run {run} ({store})")
        finally:
            worker.stop()

    def baseline(app: Isolated) -> float:
        answer = subprocess.run(
            [sys.executable, "-m", "tests.bench.faust_baseline", Topics.for_prefix(app.prefix).events, str(count)],
            env=app.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        # faust's worker routes stdout through its logger: the line may come with a log prefix.
        output = (answer.stdout + answer.stderr).splitlines()
        rates = [line.split("RATE ", 1)[1].split()[0] for line in output if "RATE " in line]
        if not rates:
            raise RuntimeError(f"the faust baseline printed no rate: {answer.stderr[-2000:]}")
        return float(rates[0])

    rates: dict[str, list[float]] = {store: [] for store in STORES}
    baselines = []
    for run in range(1, 4):
        for store in STORES:
            rates[store].append(measure(run, store))
            say(f"    worker (suppression + engagement, {store}): run {run}/3: {rates[store][-1]:,.1f} events/s")
        baselines.append(baseline(topics[-1]))
        say(f"    do-nothing faust agent, same events: run {run}/3: {baselines[-1]:,.1f} events/s")
    return {store: statistics.median(values) for store, values in rates.items()}, statistics.median(baselines)


def lookups(worker: Worker, count: int, entries: int) -> tuple[float, float]:
    rng = random.Random(5)
    worker.get("/suppression/gone0@bench.example")  # connect once
    timings = []
    for _ in range(count):
        address = f"gone{rng.randrange(entries)}@bench.example"
        started = time.perf_counter()
        answer = worker.get(f"/suppression/{address}")
        timings.append((time.perf_counter() - started) * 1000)
        if answer is None or not answer.json()["suppressed"]:
            raise RuntimeError(f"{address} should be suppressed")
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


def check_gating(worker: Worker, entries: int) -> None:
    """Ready means gating: a sample of the suppressed addresses is refused right away."""
    for n in range(0, entries, max(1, entries // 50)):
        answer = worker.get(f"/suppression/gone{n}@bench.example")
        if answer is None or not answer.json()["suppressed"]:
            raise RuntimeError(f"gone{n}@bench.example is not suppressed after the restart")


def restart_to_gating(app: Isolated, entries: int) -> float:
    """Seconds from a worker's start until it is ready; then a sample of the addresses must be refused."""
    worker = app.worker()
    try:
        seconds = wait_ready(worker, timeout=1800)
        check_gating(worker, entries)
    finally:
        worker.stop()
    return seconds


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(worker: Worker, timeout: float = 900) -> None:
    """Until the worker spends under a tenth of a core for 3 s: its standby copies are read."""
    assert worker.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(worker.process.pid)
        time.sleep(3)
        if cpu_seconds(worker.process.pid) - before < 0.3:
            return
    raise RuntimeError(f"worker still busy after {timeout:.0f}s; see {worker.log}")


def gates_everything(worker: Worker, entries: int) -> bool:
    """A sample of the suppressed addresses, over every partition, all refused by ``worker`` itself."""
    for n in range(0, entries, max(1, entries // 50)):
        answer = worker.get(f"/suppression/gone{n}@bench.example")
        if answer is None or answer.status_code != 200 or not answer.json()["suppressed"]:
            return False
    return True


def standby_takeover(app: Isolated, entries: int) -> float:
    """Seconds from SIGKILLing one of two workers until the survivor, holding standby copies of the dead
    one's partitions (``MAILPULSE_STANDBY_REPLICAS`` 1), gates every partition."""
    first = app.worker()
    second_env = {**app.env, "MAILPULSE_VAR_DIR": str(app.root / "second"), "MAILPULSE_WORKER_WEB_PORT": str(PORT + 1)}
    second = Worker(second_env, "worker-second")
    try:
        wait_ready(first, timeout=1800)
        second.start()
        wait_ready(second, timeout=1800)  # it took half the partitions over (read from the changelog)
        say("      two workers ready; waiting for the second one's standby copies")
        wait_idle(second)
        wait_idle(first)
        if not gates_everything(second, entries):
            raise RuntimeError("the second worker does not answer for every partition before the kill")
        first.kill()
        killed = time.monotonic()
        while not gates_everything(second, entries):
            if time.monotonic() - killed > 600:
                raise RuntimeError(f"no takeover in 600 s; see {second.log}")
            time.sleep(0.2)
        return time.monotonic() - killed
    finally:
        second.stop()
        first.stop()


def million_entries(settings: Settings, entries: int, store: str) -> list[Row]:
    app = Isolated(settings, "sup", store)
    say(f"    producing {entries:,} operator suppressions")
    app.publish(manual_suppressions(entries))
    worker = app.worker()
    try:
        wait_ready(worker)
        rate = consume_all(worker, entries, f"loading {entries:,} suppressions ({store})")
        time.sleep(2)  # let the last changelog writes settle before reading the peak
        rss = worker.peak_rss_mib()
        p50, p99 = lookups(worker, 2000, entries)
    finally:
        worker.stop()
    label = f"{entries:,} entries, {store}"
    rows = []
    if store.startswith("rocksdb"):
        say(f"    restarting the worker on its local RocksDB files ({entries:,} entries)")
        local = restart_to_gating(app, entries)
        rows.append(Row(f"restart with local state to gating ({label})", local, "s", "<= 10", local <= 10))
        say("    two workers, then SIGKILL one: the survivor takes its partitions over from standby copies")
        takeover = standby_takeover(app, entries)
        bound = settings.worker_session_timeout_seconds + 5
        goal = f"<= {bound:.0f} (session timeout + 5)"
        name = f"takeover by a worker holding standby copies, kill to gating ({label})"
        rows.append(Row(name, takeover, "s", goal, takeover <= bound))
        app.wipe_local_state()  # recover from the changelog, not from the local RocksDB files
    say(f"    restarting the worker to recover {entries:,} entries from the changelog")
    recovery = restart_to_gating(app, entries)
    return [
        *rows,
        Row(f"loading suppressions ({label})", rate, "events/s"),
        Row(f"suppression lookup p50 over HTTP ({label})", p50, "ms"),
        Row(f"suppression lookup p99 over HTTP ({label})", p99, "ms"),
        Row(f"worker peak RSS ({label})", rss, "MiB"),
        Row(f"table recovery from the changelog to ready ({label})", recovery, "s"),
    ]


def main(settings: Settings, quick: bool) -> None:
    count = 30_000 if quick else 200_000
    entries = 50_000 if quick else 1_000_000
    say(f"  throughput: {count:,} campaign events a run, 3 runs per store, a fresh worker each")
    rates, ceiling = throughput(settings, count)
    goals = {"memory://": 30_000, "rocksdb://": 20_000}
    rows = [
        Row(
            f"events/s through suppression + engagement, one worker, {store}",
            rates[store],
            "events/s",
            f">= {goals[store]:,}",
            rates[store] >= goals[store],
        )
        for store in STORES
    ]
    rows += [
        Row("events/s of a do-nothing faust agent (faust's stream alone)", ceiling, "events/s"),
        Row("worker (memory://) / do-nothing agent ratio", rates["memory://"] / ceiling, ""),
    ]
    for store in STORES:
        say(f"  {entries:,} suppressed addresses in the {store} store")
        rows += million_entries(settings, entries, store)
    print_table("processors (faust worker)", rows)
