"""Migrations forwards, backwards and forwards again on a fresh embedded store (own process: one chdb path each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def mailpulse(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILPULSE_CLICKHOUSE_URL": f"chdb://{store}", "MAILPULSE_SINK_API_PORT": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mailpulse", *args], capture_output=True, text=True, env=env, timeout=120
    )


def tables(store: Path) -> list[str]:
    done = mailpulse(store, "sql", "SHOW TABLES", "--format", "json")
    assert done.returncode == 0, done.stderr
    return sorted(row["name"] for row in json.loads(done.stdout))


def test_forwards_backwards_forwards(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = mailpulse(store, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 0001_events" in first.stdout and "applied 0003_events_hourly" in first.stdout
    assert {"events", "events_hourly", "events_hourly_mv", "suppression_changes"} <= set(tables(store))
    assert mailpulse(store, "migrate").stdout.strip() == "schema up to date"

    back = mailpulse(store, "migrate", "--target", "1")
    assert back.returncode == 0 and "reverted 0003_events_hourly" in back.stdout and "reverted 0002" in back.stdout
    assert "events_hourly" not in tables(store) and "events" in tables(store)

    again = mailpulse(store, "migrate")
    assert "applied 0002_suppression_changes" in again.stdout and "applied 0003_events_hourly" in again.stdout
