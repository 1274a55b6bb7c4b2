"""The Apache Kafka jars from Maven Central (fetched once with mvn into ``var/cache/kafka-libs-<version>`` of
the checkout, shared by every var dir), and running its tools on the machine's Java."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"


class LocalKafkaError(RuntimeError):
    pass


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise LocalKafkaError(f"no kafka.version in {POM}")
    return match.group(1)


def libs_dir() -> Path:
    return ROOT / "var" / "cache" / f"kafka-libs-{kafka_version()}"


def fetch_jars() -> Path:
    """Resolve the broker jars with Maven once; later calls find them cached."""
    libs = libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise LocalKafkaError("mvn not found: install Maven (Debian package 'maven')")
    log.info("fetching Apache Kafka %s jars with mvn into %s", kafka_version(), libs)
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalKafkaError(f"mvn failed to fetch Kafka:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    marker.touch()
    return libs


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise LocalKafkaError("java not found: Kafka 4 needs Java 17 or newer")
    return java


def kafka_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([java(), "-cp", f"{libs_dir()}/*", *args], capture_output=True, text=True, check=False)
