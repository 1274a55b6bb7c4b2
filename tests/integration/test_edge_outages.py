"""The edges with the broker gone: unsubscribes answer 503 at once, the pixel never waits, nothing freezes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenCodec
from tests.integration.helpers import link_claims, operator_headers, wait_until
from tests.support.ports import free_port
from tests.support.worker_process import metric_value


def test_unsubscribe_answers_503_with_retry_after_when_kafka_cannot_acknowledge(tmp_path: object) -> None:
    from starlette.testclient import TestClient

    from producers.app import create_public_app

    # A real producer pointed at a port where no broker listens.
    dead = Settings.from_env(
        {
            "MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "MAILPULSE_PUBLISH_TIMEOUT_SECONDS": "1",
            "MAILPULSE_SECRET_KEYS": "k",
        }
    )
    token = TokenCodec(["k"]).mint(link_claims(LinkKind.UNSUBSCRIBE, "dead"))
    with TestClient(create_public_app(dead)) as client:
        answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert client.get("/readyz").status_code == 503
        # The pixel never waits for Kafka.
        assert client.get(f"/o/{TokenCodec(['k']).mint(link_claims(LinkKind.OPEN, 'dead'))}.gif").status_code == 200


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _pixel_helpers(pid: int, expected: int | None = None) -> list[int]:
    """The edge's pixel helpers (spawned children; the other child is multiprocessing's resource tracker);
    none until ``expected`` of them run."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found if expected is None or len(found) == expected else []


def test_a_long_broker_outage_never_freezes_the_edge_and_every_shed_or_lost_event_is_counted(
    stack: Settings, tmp_path: Path
) -> None:
    """Issue 20 item 6: with the broker gone, a full queue made the edge spin on its event loop and a full
    pipe to the pixel helper block it: unsubscribes and webhooks hung instead of answering 503, and opens
    expired in the queue uncounted."""
    ports = [free_port() for _ in range(2)]
    env = {
        **os.environ,
        "MAILPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody listens: the outage
        "MAILPULSE_EDGE_PORT": str(ports[0]),
        "MAILPULSE_OPERATOR_PORT": str(ports[1]),
        "MAILPULSE_BOUNCE_SMTP_PORT": "0",
        "MAILPULSE_PUBLISH_TIMEOUT_SECONDS": "1",
        "MAILPULSE_EDGE_QUEUE_MAX_MESSAGES": "200",
        "MAILPULSE_EDGE_DELIVERY_TIMEOUT_SECONDS": "3",
        "MAILPULSE_VAR_DIR": str(tmp_path),
        "MAILPULSE_LOG_FORMAT": "text",
    }
    base, operator_url = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    log = (tmp_path / "edge.log").open("wb")
    edge_process = subprocess.Popen([sys.executable, "-m", "mailpulse", "edge"], env=env, stdout=log, stderr=log)
    codec = TokenCodec(stack.secret_keys)
    try:
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=60, what="the edge up")
        helpers = wait_until(lambda: _pixel_helpers(edge_process.pid, 2), timeout=30, what="both pixel helpers")
        for helper in helpers:  # helpers that read nothing: the pipes fill
            os.kill(helper, signal.SIGSTOP)
        slow: list[tuple[str, float, int]] = []
        stop = threading.Event()

        def timed(name: str, call: Callable[[], httpx.Response]) -> None:
            started = time.monotonic()
            try:
                status = call().status_code
            except httpx.HTTPError:
                status = 0
            slow.append((name, time.monotonic() - started, status))

        def probe() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    url = f"{base}/u/{codec.mint(link_claims(LinkKind.UNSUBSCRIBE, 'outage'))}"
                    timed("unsubscribe", lambda: client.post(url, data={"List-Unsubscribe": "One-Click"}))  # noqa: B023
                    timed("healthz", lambda: client.get(f"{base}/healthz"))
                    time.sleep(0.2)

        prober = threading.Thread(target=probe)
        prober.start()
        with httpx.Client(timeout=5) as client:
            click = codec.mint(link_claims(LinkKind.CLICK, "outage", url="https://example.com/"))
            pixel = codec.mint(link_claims(LinkKind.OPEN, "outage"))
            for _ in range(600):
                assert client.get(f"{base}/c/{click}", follow_redirects=False).status_code == 302
            # Past the delivery timeout, and long enough for several unsubscribes to be probed meanwhile
            # (each waits out the 1 s publish timeout: 8,000 pixels alone once took under 5 s).
            started, sent = time.monotonic(), 0
            while sent < 8000 or time.monotonic() - started < 8.0:
                assert client.get(f"{base}/o/{pixel}.gif").status_code == 200
                sent += 1
        stop.set()
        prober.join()
        for helper in helpers:
            os.kill(helper, signal.SIGCONT)
        unsubscribes = [(seconds, status) for name, seconds, status in slow if name == "unsubscribe"]
        health = [seconds for name, seconds, status in slow if name == "healthz" and status == 200]
        assert len(unsubscribes) >= 5 and all(status == 503 for _, status in unsubscribes), unsubscribes[:5]
        assert max(seconds for seconds, _ in unsubscribes) < 2.5, max(unsubscribes)
        assert len(health) == len(unsubscribes) and max(health) < 1.0

        def counted() -> dict[str, float]:
            text = httpx.get(f"{operator_url}/metrics", headers=operator_headers(stack), timeout=5).text
            names = (
                "mailpulse_edge_events_shed_total",
                "mailpulse_edge_pixel_opens_shed_total",
                "mailpulse_edge_publish_failures_total",
                "mailpulse_edge_pixel_opens_lost_total",
            )
            return {name: metric_value(text, name) for name in names}

        # Clicks past the queue's bound shed, opens the stuck helper could not take shed; what waited in a
        # queue past the delivery timeout is counted lost.
        totals = wait_until(lambda: (c := counted()) and all(c.values()) and c, timeout=30, what="every count")
        assert totals["mailpulse_edge_events_shed_total"] >= 600 - 200 - 5
        assert totals["mailpulse_edge_pixel_opens_shed_total"] > 0
    finally:
        for helper in _pixel_helpers(edge_process.pid) if edge_process.poll() is None else []:
            os.kill(helper, signal.SIGCONT)
        edge_process.terminate()
        try:
            edge_process.wait(60)
        except subprocess.TimeoutExpired:
            edge_process.kill()
            edge_process.wait(10)
        log.close()
