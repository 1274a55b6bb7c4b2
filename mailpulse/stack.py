"""Local stack supervisor: starts, checks and stops every service in order.

Each service is a ``python -m mailpulse <service>`` process with its pid in
``var/run`` and its log in ``var/log``. Kafka is started only when
``MAILPULSE_KAFKA_BOOTSTRAP`` is unset; the SMTP sink only when
``MAILPULSE_SMTP_URL`` points at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import httpx

from mailpulse.localkafka import LocalKafka
from mailpulse.operator_key import stack_keys
from mailpulse.processes import is_alive, port_open, terminate
from mailpulse.topics_admin import ensure_topics
from schemas.settings import Settings

Say = Callable[[str], None]


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the stack, as `mailpulse status` shows it."""

    service: str
    pid: int | None
    port: int
    state: str  # "up", "down" (no process), "starting" (a process that does not answer yet)


@dataclass(frozen=True)
class Service:
    """One process `up` starts: ``python -m mailpulse <command>`` with ``env`` on top of the stack's."""

    name: str
    ready: Callable[[], bool]
    port: int
    command: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def program(self) -> str:
        return self.command or self.name


# Instance i of a service listens on its ports + 10 (i - 1): edge-2 on 8090 (operator 8091, bounce mail 2536),
# sink-2 on 8092, worker-2 on 6076.
INSTANCE_PORT_STEP = 10


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def uses_local_smtp_sink(settings: Settings) -> bool:
    parsed = urlparse(settings.smtp_url)
    return parsed.hostname in ("127.0.0.1", "localhost") and parsed.port == settings.smtp_sink_port


def _instances(kind: str, count: int) -> list[tuple[str, int]]:
    """(name, port offset) of each instance: one is named as the service, several are numbered."""
    if count == 1:
        return [(kind, 0)]
    return [(f"{kind}-{n}", INSTANCE_PORT_STEP * (n - 1)) for n in range(1, count + 1)]


def services(settings: Settings) -> list[Service]:
    """Every process of the stack, in the order they start (each kind ``MAILPULSE_<KIND>S`` times)."""
    chosen = []
    if uses_local_smtp_sink(settings):
        chosen.append(Service("smtp-sink", partial(port_open, settings.smtp_sink_port), settings.smtp_sink_port))
    for name, step in _instances("sink", settings.sinks):
        port = settings.sink_api_port + step
        env = {"MAILPULSE_SINK_API_PORT": str(port)}
        chosen.append(Service(name, _http_ok(f"http://127.0.0.1:{port}/healthz"), port, "sink", env))
    for name, step in _instances("worker", settings.workers):
        port = settings.worker_web_port + step
        env = {"MAILPULSE_WORKER_WEB_PORT": str(port)}
        if step:  # its own tables and delivery process beside the first's
            env["MAILPULSE_VAR_DIR"] = str(settings.var_dir / name)
        chosen.append(Service(name, _http_ok(f"http://127.0.0.1:{port}/healthz"), port, "worker", env))
    for name, step in _instances("edge", settings.edges):
        port = settings.edge_port + step
        env = {
            "MAILPULSE_EDGE_PORT": str(port),
            "MAILPULSE_OPERATOR_PORT": str(settings.operator_port + step),
            "MAILPULSE_BOUNCE_SMTP_PORT": str(settings.bounce_smtp_port + step if settings.bounce_smtp_port else 0),
        }
        chosen.append(Service(name, _http_ok(f"http://{settings.edge_host}:{port}/readyz"), port, "edge", env))
    return chosen


def _state(pid: int | None, ready: Callable[[], bool]) -> str:
    if pid is None:
        return "down"
    return "up" if ready() else "starting"


def _ready_within(ready: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class Stack:
    def __init__(
        self, settings: Settings, say: Say = lambda line: None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.say = say
        # The environment its processes start with (a second stack beside the first: the cluster tests).
        self.environ = os.environ if environ is None else environ
        self.run_dir = settings.var_dir / "run"
        self.log_dir = settings.var_dir / "log"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        return pid if is_alive(pid) else None

    def _spawn(self, service: Service) -> subprocess.Popen[bytes]:
        name = service.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.environ,
            "MAILPULSE_VAR_DIR": str(self.settings.var_dir),
            # The operator's keys, or the stack's own when none is set (found again by the commands).
            "MAILPULSE_API_KEYS": ",".join(stack_keys(self.settings)),
            **service.env,
        }
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailpulse", service.program],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._pid_file(name).write_text(str(proc.pid))
        return proc

    def up(self, timeout: float = 120.0) -> None:
        steps = services(self.settings)
        total = len(steps) + 2
        started = time.monotonic()
        if self.settings.uses_local_kafka:
            kafka = LocalKafka.from_settings(self.settings)
            brokers = f"{kafka.brokers} local brokers" if kafka.brokers > 1 else "local broker"
            self.say(
                f"[1/{total}] kafka: starting {brokers} on {kafka.bootstrap} (first run fetches the jars with mvn)"
            )
            kafka.start()
        else:
            self.say(f"[1/{total}] kafka: using {self.settings.kafka_bootstrap}")
        self.say(f"[2/{total}] topics: {', '.join(ensure_topics(self.settings)) or 'all present'}")
        for number, service in enumerate(steps, start=3):
            t0 = time.monotonic()
            running = self.pid(service.name)
            if running:
                # Running but perhaps not ready yet (a worker recovering its tables after a rebalance): waited
                # for, never mistaken for a stranger on its port.
                if not _ready_within(service.ready, timeout):
                    raise StackError(
                        f"{service.name} (pid {running}) runs but is not ready after {timeout:.0f}s; "
                        f"see {self.log_dir}/{service.name}.log"
                    )
                self.say(f"[{number}/{total}] {service.name}: already running")
                continue
            if port_open(service.port):
                raise StackError(f"{service.name}: port {service.port} is taken by another process")
            proc = self._spawn(service)
            deadline = time.monotonic() + timeout
            while not service.ready():
                if proc.poll() is not None:
                    raise StackError(
                        f"{service.name} exited with {proc.returncode}; see {self.log_dir}/{service.name}.log"
                    )
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{service.name} not ready in {timeout:.0f}s; see {self.log_dir}/{service.name}.log"
                    )
                time.sleep(0.2)
            self.say(
                f"[{number}/{total}] {service.name}: ready on 127.0.0.1:{service.port} ({time.monotonic() - t0:.1f}s)"
            )
        self.say(f"stack up in {time.monotonic() - started:.1f}s; logs in {self.log_dir}")

    def stop_service(self, name: str, timeout: float = 30.0) -> None:
        pid = self.pid(name)
        if pid is not None and not terminate(pid, timeout):
            self.say(f"{name}: did not stop in {timeout:.0f}s, killed it")
        self._pid_file(name).unlink(missing_ok=True)

    def down(self) -> None:
        for service in reversed(services(self.settings)):
            if self.pid(service.name):
                self.say(f"stopping {service.name}")
            self.stop_service(service.name)
        if self.settings.uses_local_kafka:
            kafka = LocalKafka.from_settings(self.settings)
            if kafka.running_pid():
                self.say("stopping kafka")
            kafka.stop()

    def status(self) -> list[ProcessStatus]:
        found = []
        if self.settings.uses_local_kafka:
            for node in LocalKafka.from_settings(self.settings).nodes:
                pid = node.running_pid()
                found.append(ProcessStatus(node.name, pid, node.port, _state(pid, partial(port_open, node.port))))
        for service in services(self.settings):
            pid = self.pid(service.name)
            found.append(ProcessStatus(service.name, pid, service.port, _state(pid, service.ready)))
        return found

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM or until a service dies."""
        stop = {"flag": False}

        def handler(signum: int, frame: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        while not stop["flag"]:
            dead = [s.name for s in services(self.settings) if not self.pid(s.name)]
            if dead:
                self.say(f"service stopped unexpectedly: {', '.join(dead)}; see {self.log_dir}")
                return
            time.sleep(0.5)
