"""The deployment files name only what exists: every command parses, every MAILPULSE_* variable is a
declared and documented setting whose value parses, every port is the one the services listen on, and
the cluster they describe is the one the code expects (Kafka version, copies, ClickHouse cluster name)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailpulse.cli import build_parser
from mailpulse.localkafka import kafka_version
from schemas.settings import Settings, declarations

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_FILES = [DEPLOY / "compose" / "mailpulse.env.example", DEPLOY / "systemd" / "mailpulse.env.example"]
DECLARED = {declared.env for _, declared in declarations()}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def mailpulse_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("image", "").startswith("mailpulse")}


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def interpolated(env: dict[str, Any]) -> dict[str, str]:
    """Compose's ``${NAME:?message}`` filled with a stand-in, as an operator's environment would."""
    return {k: re.sub(r"\$\{[A-Z_]+(:\?[^}]*)?\}", "secret", str(v)) for k, v in env.items()}


def unit(path: Path) -> tuple[list[str], dict[str, str]]:
    """(ExecStart's arguments after the program, Environment= settings) of a systemd unit."""
    text = path.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", text, re.M)
    assert exec_start and exec_start.group(1).endswith("/mailpulse"), path.name
    environment = dict(m.split("=", 1) for m in re.findall(r"^Environment=(\S+)$", text, re.M))
    return exec_start.group(2).split(), environment


def named_variables() -> dict[str, str]:
    """Every MAILPULSE_* variable a deployment file sets, and where."""
    found: dict[str, str] = {}
    for path in [COMPOSE, *UNITS, *ENV_FILES, DEPLOY / "Dockerfile"]:
        for name in re.findall(r"\bMAILPULSE_[A-Z0-9_]+", path.read_text()):
            found.setdefault(name, path.name)
    return found


def test_every_variable_is_a_declared_documented_setting() -> None:
    named = named_variables()
    assert len(named) >= 20
    settings_page = (ROOT / "docs" / "settings.md").read_text()
    unknown = {name: where for name, where in named.items() if name not in DECLARED}
    assert unknown == {}
    assert [name for name in named if f"`{name}`" not in settings_page] == []


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.parent.name)
def test_the_example_environments_parse_into_settings(path: Path) -> None:
    env = env_file(path)
    settings = Settings.from_env(env)
    assert settings.environment == "production" and not settings.uses_dev_secret
    settings.refuse_development_secret()


def test_every_compose_service_runs_a_command_the_cli_has_with_settings_that_parse() -> None:
    services = mailpulse_services()
    assert {"topics", "migrate", "worker", "sink", "edge"} <= set(services)
    parser = build_parser()
    base = env_file(ENV_FILES[0])
    for name, service in services.items():
        args = parser.parse_args(service["command"])  # exits (fails the test) on an unknown command or option
        assert args.handler is not None, name
        settings = Settings.from_env({**base, **interpolated(service.get("environment", {}))})
        assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
        assert not settings.uses_local_kafka and not settings.uses_embedded_clickhouse
        assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092,kafka-3:9092"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_every_unit_runs_a_command_the_cli_has_with_settings_that_parse(path: Path) -> None:
    args, environment = unit(path)
    assert build_parser().parse_args(args).handler is not None
    assert path.stem == f"mailpulse-{args[0]}"
    assert "EnvironmentFile=/etc/mailpulse/mailpulse.env" in path.read_text()
    settings = Settings.from_env({**env_file(ENV_FILES[1]), **environment})
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
    for pre in re.findall(r"^ExecStartPre=\S+/mailpulse (.*)$", path.read_text(), re.M):
        assert build_parser().parse_args(pre.split()).handler is not None


def test_ports_are_the_ones_the_services_listen_on() -> None:
    settings = Settings.from_env(env_file(ENV_FILES[0]))
    listened = {settings.edge_port, settings.operator_port, settings.sink_api_port, settings.worker_web_port}
    listened.add(settings.bounce_smtp_port)
    exposed = re.search(r"^EXPOSE (.*)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert exposed and {int(p) for p in exposed.group(1).split()} == listened
    published = {int(p.rsplit(":", 1)[1]) for p in mailpulse_services()["edge"]["ports"]}
    assert published == {settings.edge_port, settings.operator_port, settings.bounce_smtp_port}
    # The operator edge is published on the host's loopback alone.
    assert f"127.0.0.1:{settings.operator_port}:{settings.operator_port}" in mailpulse_services()["edge"]["ports"]
    env = interpolated(compose()["x-mailpulse"]["environment"])
    assert env["MAILPULSE_WORKER_URL"].endswith(f":{settings.worker_web_port}")
    assert env["MAILPULSE_SINK_URL"].endswith(f":{settings.sink_api_port}")


def test_the_kafka_cluster_is_the_version_the_project_runs_with_three_copies() -> None:
    spec = compose()
    brokers = {name: s for name, s in spec["services"].items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    for name, broker in brokers.items():
        assert broker["image"] == f"apache/kafka:{kafka_version()}"
        env = broker["environment"]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2" and env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    ids = sorted(int(b["environment"]["KAFKA_NODE_ID"]) for b in brokers.values())
    voters = spec["x-kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == ",".join(f"{n}@kafka-{n}:9093" for n in ids)


def test_the_clickhouse_cluster_is_the_one_migrate_is_told_about() -> None:
    directory = DEPLOY / "compose" / "clickhouse"
    trees = {path.name: ET.parse(path).getroot() for path in directory.glob("*.xml")}
    assert set(trees) == {"cluster.xml", "keeper.xml", "users.xml"}
    (cluster,) = list(trees["cluster.xml"].find("remote_servers") or [])
    command = mailpulse_services()["migrate"]["command"]
    assert command[command.index("--cluster") + 1] == cluster.tag
    replicas = [r.findtext("host") for r in cluster.iter("replica")]
    servers = {
        n for n, s in compose()["services"].items() if s.get("image", "").startswith("clickhouse/clickhouse-server")
    }
    assert sorted(replicas) == sorted(servers) and len(servers) == 2
    users = trees["users.xml"].find("users")
    assert users is not None
    for url in ("MAILPULSE_CLICKHOUSE_URL", "MAILPULSE_CLICKHOUSE_ANALYST_URL"):
        user = re.match(r"https?://([^:]+):", compose()["x-mailpulse"]["environment"][url])
        assert user and users.find(user.group(1)) is not None
    analyst = trees["users.xml"].find("profiles/mailpulse_analyst")
    assert analyst is not None and analyst.findtext("readonly") == "1"


def test_the_image_holds_every_package_the_project_installs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject)
    assert include
    packages = {name.strip(' "*') for name in include.group(1).split(",")}
    copied = set(re.findall(r"^COPY (\w+) \1$", (DEPLOY / "Dockerfile").read_text(), re.M))
    assert copied == packages


def test_the_readme_and_the_docs_lead_to_the_deployment() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/deploy.md" in readme
    page = (ROOT / "docs" / "deploy.md").read_text()
    for path in [COMPOSE, *UNITS, *ENV_FILES, DEPLOY / "Dockerfile"]:
        assert str(path.relative_to(ROOT)) in page, path
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = {c for m in re.findall(r"`mailpulse ([a-z-]+(?:\\\|[a-z-]+)*)", operations) for c in m.split("\\|")}
    used = {s["command"][0] for s in mailpulse_services().values()} | {unit(path)[0][0] for path in UNITS}
    assert used - documented == set()
