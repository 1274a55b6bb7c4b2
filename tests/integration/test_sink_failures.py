"""A sink whose ClickHouse refuses inserts: it says so on /healthz, exits non-zero, and loses nothing.

The sink runs as its own process on its own topics (another prefix) and store, against the
session's broker; ClickHouse refuses the inserts through a real table constraint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from schemas.settings import Settings
from tests.integration.helpers import campaign_events, produce, unique, wait_until

SINK_PORT = 18092


def _env(settings: Settings, store: Path, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "MAILPULSE_TOPIC_PREFIX": prefix,
        "MAILPULSE_CLICKHOUSE_URL": f"chdb://{store}",
        "MAILPULSE_SINK_API_PORT": str(SINK_PORT),
        "MAILPULSE_SINK_INSERT_ATTEMPTS": "4",
        "MAILPULSE_LOG_FORMAT": "text",
    }


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _store_command(env: dict[str, str], statement: str) -> None:
    """DDL on the store from a process of its own (chdb: one process per data path)."""
    script = "import sys; from sinks.store import EventStore; EventStore(sys.argv[1]).command(sys.argv[2])"
    _run(env, "-c", script, env["MAILPULSE_CLICKHOUSE_URL"], statement)


def _health() -> tuple[int, str]:
    try:
        answer = httpx.get(f"http://127.0.0.1:{SINK_PORT}/healthz", timeout=2)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    return answer.status_code, answer.text


def test_refused_inserts_turn_health_red_end_the_process_and_are_stored_after_a_restart(
    stack: Settings, tmp_path: Path
) -> None:
    prefix = unique("refuse")
    env = _env(stack, tmp_path / "store", prefix)
    _run(env, "-m", "mailpulse", "topics")
    _run(env, "-m", "mailpulse", "migrate")
    campaign = unique("refused")
    _store_command(env, f"ALTER TABLE events ADD CONSTRAINT refuse_test CHECK campaign_id != '{campaign}'")

    log = (tmp_path / "sink.log").open("w")
    sink = subprocess.Popen([sys.executable, "-m", "mailpulse", "sink"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _health()[0] == 200, timeout=60, what="the sink to be healthy")
        events = campaign_events(campaign, 50, datetime.now(UTC))
        produce(Settings.from_env(env), events)

        _, body = wait_until(
            lambda: (h := _health())[0] == 503 and h, timeout=30, what="/healthz to report the failing insert"
        )
        assert "insert failing" in body and "events" in body, body
        # 4 attempts with 0.5 + 1 + 2 s between them, then the process ends with a failure status.
        # A failure status (not a signal), so a supervisor such as systemd's Restart=on-failure restarts it.
        assert sink.wait(timeout=60) == 1
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
        log.close()
    assert "sink consumer crashed" in (tmp_path / "sink.log").read_text()

    # ClickHouse takes them again: a new sink stores every event, because nothing was committed.
    _store_command(env, "ALTER TABLE events DROP CONSTRAINT refuse_test")
    sink = subprocess.Popen([sys.executable, "-m", "mailpulse", "sink"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: _health()[0] == 200, timeout=60, what="the restarted sink to be healthy")

        def stored() -> int:
            answer = httpx.post(
                f"http://127.0.0.1:{SINK_PORT}/sql",
                content=f"SELECT uniqExact(event_id) FROM events WHERE campaign_id = '{campaign}'".encode(),
                headers={"Authorization": f"Bearer {stack.api_keys[0]}"},
                timeout=10,
            )
            return int(answer.json()["rows"][0][0]) if answer.status_code == 200 else -1

        wait_until(lambda: stored() == len(events), timeout=60, what="every refused event stored after the restart")
        time.sleep(1.0)
        assert stored() == len(events)
    finally:
        sink.terminate()
        assert sink.wait(timeout=60) in (0, -signal.SIGTERM)
