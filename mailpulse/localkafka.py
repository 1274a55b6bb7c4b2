"""The local Kafka (KRaft): fetch jars with mvn, format once, start, stop; one node or several.

The jars are fetched once into ``var/cache/kafka-libs-<version>`` of the checkout (shared by every var dir,
e.g. the test stack's). One node (the default) keeps its files under ``<var>/kafka``: ``data/`` (log dirs,
kept across stop/start), ``server.properties`` and ``broker.log``. A cluster of N
(``MAILPULSE_LOCAL_KAFKA_BROKERS``) keeps node i's under ``<var>/kafka/node-i``, listening on
``MAILPULSE_LOCAL_KAFKA_PORT + 2(i-1)`` (its controller on the port after): the first three nodes are
broker and controller at once (a quorum that survives one loss), any further ones brokers only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mailpulse.kafka_jars import LocalKafkaError, fetch_jars, java, kafka_tool, kafka_version, libs_dir
from mailpulse.processes import is_alive, port_open, terminate
from schemas.settings import Settings
from schemas.settings.common import min_insync_replicas

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PROPERTIES_TEMPLATE = ROOT / "deploy" / "kafka" / "server.properties.in"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"
MAX_CONTROLLERS = 3


@dataclass(frozen=True)
class LocalBroker:
    """One node of the local cluster: its files, ports and process."""

    node_id: int
    home: Path
    port: int
    brokers: int  # nodes in its cluster

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"

    @property
    def is_controller(self) -> bool:
        return self.node_id <= MAX_CONTROLLERS

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def _voters(self) -> str:
        first = self.port - 2 * (self.node_id - 1)
        controllers = range(1, min(self.brokers, MAX_CONTROLLERS) + 1)
        return ",".join(f"{n}@127.0.0.1:{first + 2 * (n - 1) + 1}" for n in controllers)

    def write_properties(self) -> Path:
        replication = min(self.brokers, MAX_CONTROLLERS)
        listeners = f"PLAINTEXT://127.0.0.1:{self.port}"
        if self.is_controller:
            listeners += f",CONTROLLER://127.0.0.1:{self.controller_port}"
        values = {
            "@ROLES@": "broker,controller" if self.is_controller else "broker",
            "@NODE_ID@": str(self.node_id),
            "@VOTERS@": self._voters(),
            "@LISTENERS@": listeners,
            "@PORT@": str(self.port),
            "@DATA_DIR@": str(self.data_dir),
            "@REPLICATION@": str(replication),
            "@MIN_ISR@": str(min_insync_replicas(replication)),
        }
        text = PROPERTIES_TEMPLATE.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "server.properties"
        path.write_text(text)
        return path

    def format_storage(self, cluster_id: str) -> None:
        """Format the node's KRaft log dir once; an existing one (with data) is kept."""
        if (self.data_dir / "meta.properties").exists():
            return
        result = kafka_tool(
            # One argument: an id may begin with "-" (URL-safe base64), which a separate one would pass as an option.
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.write_properties()),
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting {self.name}'s storage failed: {result.stdout}{result.stderr}")

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_alive(pid) else None

    def spawn(self) -> subprocess.Popen[bytes]:
        properties = self.write_properties()
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [
                    java(),
                    "-Xms256m",
                    "-Xmx1g",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                    "-cp",
                    f"{libs_dir()}/*",
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def signal(self, signum: signal.Signals) -> int | None:
        """Send ``signum`` to the node (for the failure tests: SIGKILL, SIGSTOP, SIGCONT); its pid or None."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signum)
        return pid


@dataclass(frozen=True)
class LocalKafka:
    """The local cluster: ``brokers`` nodes started, checked and stopped together."""

    home: Path
    port: int
    brokers: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        return cls(
            home=settings.var_dir / "kafka", port=settings.local_kafka_port, brokers=settings.local_kafka_brokers
        )

    @property
    def nodes(self) -> list[LocalBroker]:
        if self.brokers == 1:  # the layout of a one-node stack, as it always was
            return [LocalBroker(1, self.home, self.port, 1)]
        return [
            LocalBroker(n, self.home / f"node-{n}", self.port + 2 * (n - 1), self.brokers)
            for n in range(1, self.brokers + 1)
        ]

    def node(self, node_id: int) -> LocalBroker:
        return self.nodes[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def libs(self) -> Path:
        return libs_dir()

    def fetch(self) -> None:
        fetch_jars()

    def _cluster_id(self) -> str:
        """The id every node is formatted with, kept beside them; refuses a var dir made for another size."""
        self.home.mkdir(parents=True, exist_ok=True)
        size_file = self.home / "brokers"
        # A one-node stack made before clusters existed has data/ and no record of its size.
        recorded = int(size_file.read_text()) if size_file.exists() else (1 if (self.home / "data").exists() else None)
        if recorded is not None and recorded != self.brokers:
            raise LocalKafkaError(
                f"{self.home} holds a {recorded}-broker cluster, not {self.brokers}: set "
                f"MAILPULSE_LOCAL_KAFKA_BROKERS={recorded}, or stop it and remove {self.home} (its topics are lost)"
            )
        size_file.write_text(str(self.brokers))
        id_file = self.home / "cluster-id"
        if not id_file.exists():
            # The form of a Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        return id_file.read_text().strip()

    def running_pid(self) -> int | None:
        """The first node's pid, when it runs."""
        return self.nodes[0].running_pid()

    def start(self, timeout: float = 90.0) -> None:
        """Start every node that is not running, then wait until the cluster answers with all of them."""
        nodes = self.nodes
        if all(node.running_pid() and port_open(node.port) for node in nodes):
            log.info("local Kafka already running on %s", self.bootstrap)
            return
        for node in nodes:
            if not node.running_pid() and port_open(node.port):
                raise LocalKafkaError(
                    f"port {node.port} is taken by another process; set MAILPULSE_KAFKA_BOOTSTRAP to use it "
                    "or MAILPULSE_LOCAL_KAFKA_PORT to move the local broker"
                )
        fetch_jars()
        cluster_id = self._cluster_id()
        started = {}
        for node in nodes:
            node.format_storage(cluster_id)
            if not node.running_pid():
                log.info("starting Apache Kafka %s (KRaft) %s on 127.0.0.1:%d", kafka_version(), node.name, node.port)
                started[node.name] = node.spawn()
        self.wait_ready(timeout, started)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped node again (the failure tests) and wait until the cluster counts it."""
        node = self.node(node_id)
        if node.running_pid():
            return
        self.wait_ready(timeout, {node.name: node.spawn()})

    def wait_ready(self, timeout: float, started: dict[str, subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in started.items():
                if proc.poll() is not None:
                    node = next(n for n in self.nodes if n.name == name)
                    raise LocalKafkaError(f"{name} exited with {proc.returncode}; see {node.log_file}")
            if self.brokers_up() == self.brokers:
                log.info("local Kafka ready on %s", self.bootstrap)
                return
            time.sleep(0.3)
        raise LocalKafkaError(
            f"Kafka did not answer with {self.brokers} broker(s) within {timeout:.0f}s; see "
            + ", ".join(str(n.log_file) for n in self.nodes)
        )

    def brokers_up(self) -> int:
        """How many brokers the cluster's metadata lists (0 when no node answers)."""
        from confluent_kafka.admin import AdminClient

        if not any(port_open(node.port) for node in self.nodes):
            return 0
        try:
            return len(AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2).brokers)
        except Exception:
            return 0

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to every node at once (one by one, the last ones would wait for a quorum already gone),
        then each is waited for, and killed when it outlasts ``timeout``."""
        running = [(node, pid) for node in self.nodes if (pid := node.running_pid()) is not None]
        for node, pid in running:
            log.info("stopping local Kafka %s (pid %d)", node.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for node, pid in running:
            if not terminate(pid, timeout):
                log.warning("%s did not stop in %.0fs; killed it", node.name, timeout)
            node.pid_file.unlink(missing_ok=True)
