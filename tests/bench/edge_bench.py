"""Edge: pixel requests/s with Kafka publishing, served as `mailpulse edge` serves it on granian and on uvicorn,
against a bare Starlette route returning the same GIF on each server (all four measured alternately in one
run; the ratio is against the faster bare server), latency at a fixed moderate rate, and one-click
unsubscribes/s with acks=all. Load comes from wrk (Debian package) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from confluent_kafka import Consumer, TopicPartition

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from schemas.topics import Topics
from tests.bench.common import Row, median_of, print_table, say

SERVERS = ("granian", "uvicorn")
EDGE_PORTS = {"granian": 28080, "uvicorn": 28081}
BARE_PORTS = {"granian": 28090, "uvicorn": 28091}
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from producers.tracking_routes import NO_STORE, PIXEL_GIF

async def pixel(request):
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)

app = Starlette(routes=[Route("/o/{token}.gif", pixel)])
"""
# The public edge as `mailpulse edge` serves it (its server from MAILPULSE_EDGE_SERVER, head bound included).
# The guard matters: the pixel helper is a spawned process, which imports this module again. Without it
# the helper ran the edge instead and died, over and over: every pixel answered, no open published.
EDGE_RUNNER = """
import sys
from mailpulse.edge_server import Listener, run_edges
from producers.app import create_public_app
from schemas.settings import Settings

if __name__ == "__main__":
    settings = Settings.from_env()
    run_edges(settings, [Listener(create_public_app(settings), "127.0.0.1", int(sys.argv[1]))])
"""
# Each bare server with the settings the edge gives it: uvloop, HTTP/1.1, no access log.
BARE_COMMANDS = {
    "uvicorn": (
        "-m uvicorn bare_app:app --host 127.0.0.1 --http httptools --loop uvloop --log-level warning "
        "--no-access-log --no-server-header --port"
    ),
    "granian": (
        "-m granian --interface asgi --host 127.0.0.1 --http 1 --no-ws --loop uvloop --log-level warning "
        "--backlog 1024 bare_app:app --port"
    ),
}


def _serve(folder: Path, args: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=folder,
        env={**os.environ, **env, "PYTHONPATH": f"{folder}:{os.getcwd()}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/o/x.gif", timeout=1).status_code in (200, 404):
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{args} did not start on {port}")


# Answers wrk got, per URL: the pixels answered, to compare with the opens that reached Kafka.
ANSWERED: dict[str, int] = {}


def _wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error answers from {url}")
    done = re.search(r"(\d+) requests in", out)
    ANSWERED[url] = ANSWERED.get(url, 0) + (int(done.group(1)) if done else 0)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def _events_in_kafka(settings: Settings) -> int:
    """Records on the events topic, once it stopped growing for 2 s (the helper hands opens on as it can)."""
    topic = Topics.for_prefix(settings.topic_prefix).events
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-edge-count"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        last, stable_since = -1, time.monotonic()
        while True:
            total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
            if total != last:
                last, stable_since = total, time.monotonic()
            elif time.monotonic() - stable_since >= 2:
                return total
            time.sleep(0.2)
    finally:
        consumer.close()


async def _fixed_rate(url: str, rate: int, seconds: float) -> list[float]:
    """Open loop: requests start on schedule whether or not earlier ones finished (no coordinated omission)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
            scheduled = start + at
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
            latencies.append((time.perf_counter() - scheduled) * 1000)

        await asyncio.gather(*(one(i / rate) for i in range(int(rate * seconds))))
    return latencies


def _unsubscribes(url: str, seconds: int, script: str, run: int) -> float:
    return _wrk(url, seconds, 32, script)


def main(settings: Settings, quick: bool) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench` installs Debian's wrk (make bench-deps)")
    seconds = 3 if quick else 8
    codec = TokenCodec(settings.secret_keys)
    claims = TokenClaims(LinkKind.OPEN, "m" * 32, "bench-edge", "news", "reader@example.org")
    pixel = codec.mint(claims)
    unsubscribe = codec.mint(TokenClaims(LinkKind.UNSUBSCRIBE, "m" * 32, "bench-edge", "news", "reader@example.org"))
    folder = Path(tempfile.mkdtemp(prefix="mailpulse-bench-"))
    (folder / "bare_app.py").write_text(BARE_APP)
    (folder / "edge_runner.py").write_text(EDGE_RUNNER)
    (folder / "unsub.lua").write_text(
        'wrk.method = "POST"\nwrk.body = "List-Unsubscribe=One-Click"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    )
    env = {
        "MAILPULSE_VAR_DIR": str(settings.var_dir),
        "MAILPULSE_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "MAILPULSE_TOPIC_PREFIX": settings.topic_prefix,
    }
    from mailpulse.topics_admin import ensure_topics

    ensure_topics(settings)
    procs = []
    try:
        for server in SERVERS:
            edge_env = {**env, "MAILPULSE_EDGE_SERVER": server}
            procs.append(_serve(folder, ["edge_runner.py", str(EDGE_PORTS[server])], EDGE_PORTS[server], edge_env))
            bare_args = [*BARE_COMMANDS[server].split(), str(BARE_PORTS[server])]
            procs.append(_serve(folder, bare_args, BARE_PORTS[server], env))
        edge_url = {s: f"http://127.0.0.1:{EDGE_PORTS[s]}/o/{pixel}.gif" for s in SERVERS}
        bare_url = {s: f"http://127.0.0.1:{BARE_PORTS[s]}/o/{pixel}.gif" for s in SERVERS}
        # A freshly started broker spends its first tens of seconds compiling (JIT) on the same two cores;
        # measured cold, the pixel pays for that warm-up, which no long-running deployment does.
        warm = 6 if quick else 20
        say(f"  warming up the broker and the pixel servers ({warm}s), then the bare servers (2s each)")
        for server in SERVERS:
            _wrk(edge_url[server], warm // 2, 32)
            _wrk(bare_url[server], 2, 32)
        rounds: list[dict[str, float]] = []

        def alternate(run: int) -> float:
            got = {f"edge {s}": _wrk(edge_url[s], seconds, 32) for s in SERVERS}
            got |= {f"bare {s}": _wrk(bare_url[s], seconds, 32) for s in SERVERS}
            rounds.append(got)
            say(f"    run {run}: " + ", ".join(f"{name} {rate:,.0f}" for name, rate in got.items()) + " req/s")
            return got[f"edge {settings.edge_server}"] / max(got[f"bare {s}"] for s in SERVERS)

        opens_before = _events_in_kafka(settings)
        answered_before = sum(ANSWERED.get(edge_url[s], 0) for s in SERVERS)
        ratio = median_of(3, alternate, f"pixel on {settings.edge_server} / faster bare server")
        answered = sum(ANSWERED.get(edge_url[s], 0) for s in SERVERS) - answered_before
        say(f"  counting the opens that reached Kafka ({answered:,} pixels answered)")
        published = (_events_in_kafka(settings) - opens_before) / max(answered, 1)
        edge = edge_url[settings.edge_server]
        say(f"  latency at a fixed 300 req/s (open loop, {settings.edge_server})")
        latencies = asyncio.run(_fixed_rate(edge, 300, seconds))
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        say("  one-click unsubscribes (acks=all, each answer waits for the broker), on each server")
        unsubscribe_url = {s: f"http://127.0.0.1:{EDGE_PORTS[s]}/u/{unsubscribe}" for s in SERVERS}
        unsub_rate: dict[str, float] = {}
        for server in SERVERS:
            unsub_rate[server] = median_of(
                3,
                functools.partial(_unsubscribes, unsubscribe_url[server], seconds, str(folder / "unsub.lua")),
                f"unsubscribe req/s, {server}",
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    print_table(
        f"Edge ({settings.edge_server} as the edge runs it, uvloop, 1 process; wrk -t1 -c32)",
        [
            *(Row(f"pixel with Kafka publishing, {s}", median(f"edge {s}"), "req/s") for s in SERVERS),
            *(Row(f"bare Starlette pixel, {s}", median(f"bare {s}"), "req/s") for s in SERVERS),
            Row("pixel / faster bare server (median of runs)", ratio, "", ">= 0.8", ratio >= 0.8),
            Row("opens in Kafka / pixels answered, same runs", published, "", ">= 0.99", published >= 0.99),
            Row("pixel latency p50 at 300 req/s", p50, "ms"),
            Row("pixel latency p99 at 300 req/s", p99, "ms"),
            *(Row(f"one-click unsubscribe, acks=all, {s}", unsub_rate[s], "req/s") for s in SERVERS),
        ],
    )
