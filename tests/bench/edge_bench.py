"""Edge: pixel requests/s with Kafka publishing against a bare Starlette route returning the same GIF (same
uvicorn settings, measured alternately in one run), latency at a fixed moderate rate, and one-click
unsubscribes/s with acks=all. Load comes from wrk (Debian package) on 127.0.0.1."""

from __future__ import annotations

import asyncio
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

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from tests.bench.common import Row, median_of, print_table, say

EDGE_PORT, BARE_PORT = 28080, 28090
# The edge runs on its own protocol (httptools with a bounded head, as `mailpulse edge` serves it); the bare
# route on plain httptools: the comparison includes what that bound costs.
EDGE_PROTOCOL = "producers.bounded_http:BoundedHttpToolsProtocol"
SERVER_FLAGS = [
    "--loop",
    "uvloop",
    "--log-level",
    "warning",
    "--no-access-log",
    "--no-server-header",
]
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from producers.tracking_routes import NO_STORE, PIXEL_GIF

async def pixel(request):
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)

app = Starlette(routes=[Route("/o/{token}.gif", pixel)])
"""
EDGE_APP = """
from producers.app import create_public_app
from schemas.settings import Settings
app = create_public_app(Settings.from_env())
"""


def _serve(module_dir: Path, module: str, port: int, env: dict[str, str], http: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--host", "127.0.0.1"),
            *("--http", http, *SERVER_FLAGS),
        ],
        cwd=module_dir,
        env={**os.environ, **env, "PYTHONPATH": f"{module_dir}:{os.getcwd()}"},
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
    raise RuntimeError(f"{module} did not start on {port}")


def _wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error answers from {url}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


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
    (folder / "edge_app.py").write_text(EDGE_APP)
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
    edge = _serve(folder, "edge_app", EDGE_PORT, env, EDGE_PROTOCOL)
    bare = _serve(folder, "bare_app", BARE_PORT, env, "httptools")
    try:
        # A freshly started broker spends its first tens of seconds compiling (JIT) on the same two cores;
        # measured cold, the pixel pays for that warm-up, which no long-running deployment does.
        warm = 6 if quick else 20
        say(f"  warming up the broker and the pixel server ({warm}s), then the bare server (2s)")
        _wrk(f"http://127.0.0.1:{EDGE_PORT}/o/{pixel}.gif", warm, 32)
        _wrk(f"http://127.0.0.1:{BARE_PORT}/o/{pixel}.gif", 2, 32)
        pairs: list[tuple[float, float]] = []

        def alternate(run: int) -> float:
            with_kafka = _wrk(f"http://127.0.0.1:{EDGE_PORT}/o/{pixel}.gif", seconds, 32)
            plain = _wrk(f"http://127.0.0.1:{BARE_PORT}/o/{pixel}.gif", seconds, 32)
            pairs.append((with_kafka, plain))
            say(f"    run {run}: pixel+Kafka {with_kafka:,.0f} req/s, bare {plain:,.0f} req/s")
            return with_kafka / plain

        ratio = median_of(3, alternate, "pixel / bare ratio")
        say("  latency at a fixed 300 req/s (open loop)")
        latencies = asyncio.run(_fixed_rate(f"http://127.0.0.1:{EDGE_PORT}/o/{pixel}.gif", 300, seconds))
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        say("  one-click unsubscribes (acks=all, each answer waits for the broker)")
        unsub_rate = median_of(
            3,
            lambda run: _wrk(f"http://127.0.0.1:{EDGE_PORT}/u/{unsubscribe}", seconds, 32, str(folder / "unsub.lua")),
            "unsubscribe req/s",
        )
    finally:
        for proc in (edge, bare):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    print_table(
        "Edge (uvicorn, uvloop + httptools, 1 process; wrk -t1 -c32)",
        [
            Row("pixel with Kafka publishing", statistics.median(p[0] for p in pairs), "req/s"),
            Row("bare Starlette pixel", statistics.median(p[1] for p in pairs), "req/s"),
            Row("pixel / bare ratio (median of runs)", ratio, "", ">= 0.8", ratio >= 0.8),
            Row("pixel latency p50 at 300 req/s", p50, "ms"),
            Row("pixel latency p99 at 300 req/s", p99, "ms"),
            Row("one-click unsubscribe, acks=all", unsub_rate, "req/s"),
        ],
    )
