"""A ``mailpulse worker`` process of its own, for tests and benchmarks that start, kill and restart workers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from schemas.auth import auth_headers
from schemas.settings import Settings


def metric_value(text: str, sample: str) -> float:
    """The value of one sample line (``name{labels}``) in a Prometheus text exposition; 0.0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


class Worker:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env, self.name = env, name
        self.port = int(env["MAILPULSE_WORKER_WEB_PORT"])
        self.log = Path(env["MAILPULSE_VAR_DIR"]) / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=self.headers, timeout=10)

    def start(self) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailpulse", "worker"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def get(self, path: str, **params: str) -> httpx.Response | None:
        try:
            return self.client.get(path, params=params)
        except httpx.HTTPError:
            return None

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(Settings.from_env(self.env).api_keys)

    def ready(self) -> bool:
        answer = self.get("/healthz")
        return answer is not None and answer.status_code == 200

    def metric(self, sample: str) -> float:
        """The value of one Prometheus sample line of the worker (``name{labels}``); 0.0 when absent."""
        answer = self.get("/metrics")
        if answer is None or answer.status_code != 200:
            return 0.0
        return metric_value(answer.text, sample)

    def events_read(self) -> float:
        return self.metric("mailpulse_worker_events_total")

    def sends(self, outcome: str) -> float:
        return self.metric(f'mailpulse_worker_sends_total{{outcome="{outcome}"}}')

    def peak_rss_mib(self) -> float:
        """The process's peak resident set (VmHWM), in MiB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
