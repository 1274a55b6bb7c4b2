"""The local single-node Kafka (KRaft) broker: fetch jars with mvn, format once, start, stop.

The jars are fetched once into ``var/cache/kafka-libs-<version>`` of the
checkout (shared by every var dir, e.g. the test stack's); the broker's own
files live under ``<var>/kafka``: ``data/`` (log dirs, kept across stop/start),
``server.properties`` and ``broker.log``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mailpulse.processes import is_alive, port_open, terminate
from schemas.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
PROPERTIES_TEMPLATE = ROOT / "deploy" / "kafka" / "server.properties.in"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"


class LocalKafkaError(RuntimeError):
    pass


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise LocalKafkaError(f"no kafka.version in {POM}")
    return match.group(1)


@dataclass(frozen=True)
class LocalKafka:
    home: Path
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        return cls(home=settings.var_dir / "kafka", port=settings.local_kafka_port)

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def libs(self) -> Path:
        return ROOT / "var" / "cache" / f"kafka-libs-{kafka_version()}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def fetch(self) -> None:
        """Resolve the broker jars with Maven once; later calls find them cached."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            raise LocalKafkaError("mvn not found: install Maven (Debian package 'maven')")
        log.info("fetching Apache Kafka %s jars with mvn into %s", kafka_version(), self.libs)
        self.libs.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"mvn failed to fetch Kafka:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        marker.touch()

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise LocalKafkaError("java not found: Kafka 4 needs Java 17 or newer")
        return java

    def _classpath(self) -> str:
        return f"{self.libs}/*"

    def _write_properties(self) -> Path:
        text = (
            PROPERTIES_TEMPLATE.read_text()
            .replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
            .replace("@DATA_DIR@", str(self.data_dir))
        )
        path = self.home / "server.properties"
        path.write_text(text)
        return path

    def format_storage(self) -> None:
        """Format the KRaft log dir once; an existing one (with data) is kept."""
        if (self.data_dir / "meta.properties").exists():
            return
        properties = self._write_properties()
        cluster_id = (
            subprocess.run(
                [self._java(), "-cp", self._classpath(), "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = subprocess.run(
            [
                self._java(),
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_alive(pid) else None

    def start(self, timeout: float = 90.0) -> None:
        if self.running_pid() and port_open(self.port):
            log.info("local Kafka already running on 127.0.0.1:%d", self.port)
            return
        if port_open(self.port):
            raise LocalKafkaError(
                f"port {self.port} is taken by another process; set MAILPULSE_KAFKA_BOOTSTRAP to use it "
                "or MAILPULSE_LOCAL_KAFKA_PORT to move the local broker"
            )
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        self.format_storage()
        properties = self._write_properties()
        log.info("starting Apache Kafka %s (KRaft) on 127.0.0.1:%d", kafka_version(), self.port)
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [
                    self._java(),
                    "-Xms256m",
                    "-Xmx1g",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                    "-cp",
                    self._classpath(),
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalKafkaError(f"Kafka exited with {proc.returncode}; see {self.log_file}")
            if port_open(self.port) and self._answers():
                log.info("local Kafka ready on 127.0.0.1:%d", self.port)
                return
            time.sleep(0.3)
        raise LocalKafkaError(f"Kafka did not answer within {timeout:.0f}s; see {self.log_file}")

    def _answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"}).list_topics(timeout=2)
        except Exception:
            return False
        return True

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        log.info("stopping local Kafka (pid %d)", pid)
        if not terminate(pid, timeout):
            log.warning("Kafka did not stop in %.0fs; killed it", timeout)
        self.pid_file.unlink(missing_ok=True)
