"""The local cluster's layout: ports, roles, quorum, copies, and the settings every service derives from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpulse.localkafka import LocalKafka, LocalKafkaError
from processors.faust_store import state_topic_specs
from schemas.settings import Settings, SettingsError
from schemas.topics import topic_specs


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_one_broker_keeps_the_layout_and_ports_of_a_one_node_stack(tmp_path: Path) -> None:
    (node,) = LocalKafka(tmp_path / "kafka", 9092).nodes
    assert node.home == tmp_path / "kafka" and node.port == 9092 and node.controller_port == 9093
    config = properties(node.write_properties())
    assert config["process.roles"] == "broker,controller" and config["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert config["offsets.topic.replication.factor"] == "1" and config["min.insync.replicas"] == "1"


def test_five_brokers_have_a_quorum_of_three_and_two_of_three_copies_take_a_write(tmp_path: Path) -> None:
    cluster = LocalKafka(tmp_path / "kafka", 19092, brokers=5)
    assert cluster.bootstrap == ",".join(f"127.0.0.1:{p}" for p in (19092, 19094, 19096, 19098, 19100))
    configs = [properties(node.write_properties()) for node in cluster.nodes]
    assert [c["node.id"] for c in configs] == ["1", "2", "3", "4", "5"]
    assert [c["process.roles"] for c in configs] == ["broker,controller"] * 3 + ["broker"] * 2
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert {c["controller.quorum.voters"] for c in configs} == {voters}
    assert configs[3]["listeners"] == "PLAINTEXT://127.0.0.1:19098"  # a broker only: no controller listener
    assert configs[1]["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert {c["offsets.topic.replication.factor"] for c in configs} == {"3"}
    assert {c["min.insync.replicas"] for c in configs} == {"2"}
    assert len({c["log.dirs"] for c in configs}) == 5


def test_a_var_dir_made_for_one_size_refuses_another(tmp_path: Path) -> None:
    one = LocalKafka(tmp_path / "kafka", 9092)
    (one.home / "data").mkdir(parents=True)  # a one-node stack that ran before
    with pytest.raises(LocalKafkaError, match="1-broker cluster, not 3"):
        LocalKafka(tmp_path / "kafka", 9092, brokers=3)._cluster_id()
    three = LocalKafka(tmp_path / "other", 9092, brokers=3)
    cluster_id = three._cluster_id()
    assert three._cluster_id() == cluster_id and len(cluster_id) == 22
    with pytest.raises(LocalKafkaError, match="3-broker cluster, not 1"):
        LocalKafka(tmp_path / "other", 9092)._cluster_id()


def test_every_service_names_every_local_broker_and_topics_get_their_copies() -> None:
    three = Settings.from_env({"MAILPULSE_LOCAL_KAFKA_BROKERS": "3", "MAILPULSE_LOCAL_KAFKA_PORT": "9300"})
    assert three.bootstrap_servers == "127.0.0.1:9300,127.0.0.1:9302,127.0.0.1:9304"
    assert three.replication_factor == 3 and three.min_insync_replicas == 2
    specs = [*topic_specs(three), *state_topic_specs(three)]
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(3, "2")}
    two = Settings.from_env({"MAILPULSE_LOCAL_KAFKA_BROKERS": "2"})
    assert two.replication_factor == 2 and two.min_insync_replicas == 1
    assert Settings.from_env({"MAILPULSE_LOCAL_KAFKA_BROKERS": "7"}).replication_factor == 3
    # Someone else's cluster: its size is not known here, so the copies are what the operator says.
    remote = Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "k1:9092", "MAILPULSE_LOCAL_KAFKA_BROKERS": "3"})
    assert remote.bootstrap_servers == "k1:9092" and remote.replication_factor == 1
    chosen = Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "k1:9092", "MAILPULSE_REPLICATION_FACTOR": "3"})
    assert chosen.replication_factor == 3 and chosen.min_insync_replicas == 2


def test_several_of_each_service_get_their_own_names_ports_and_worker_tables() -> None:
    from mailpulse.stack import services

    settings = Settings.from_env(
        {
            "MAILPULSE_WORKERS": "3",
            "MAILPULSE_EDGES": "2",
            "MAILPULSE_SINKS": "2",
            "MAILPULSE_CLICKHOUSE_URL": "http://ch:8123/default",
            "MAILPULSE_VAR_DIR": "/srv/mp",
        }
    )
    chosen = {s.name: s for s in services(settings)}
    assert list(chosen) == ["smtp-sink", "sink-1", "sink-2", "worker-1", "worker-2", "worker-3", "edge-1", "edge-2"]
    assert [chosen[f"worker-{n}"].port for n in (1, 2, 3)] == [6066, 6076, 6086]
    assert {chosen[f"worker-{n}"].program for n in (1, 2, 3)} == {"worker"}
    assert "MAILPULSE_VAR_DIR" not in chosen["worker-1"].env  # the first keeps the stack's tables
    assert chosen["worker-3"].env["MAILPULSE_VAR_DIR"] == "/srv/mp/worker-3"
    assert chosen["edge-2"].env == {
        "MAILPULSE_EDGE_PORT": "8090",
        "MAILPULSE_OPERATOR_PORT": "8091",
        "MAILPULSE_BOUNCE_SMTP_PORT": "2536",
    }
    assert chosen["sink-2"].env == {"MAILPULSE_SINK_API_PORT": "8092"}
    one = [s.name for s in services(Settings.from_env({}))]
    assert one == ["smtp-sink", "sink", "worker", "edge"]


def test_several_sinks_need_a_clickhouse_server() -> None:
    with pytest.raises(SettingsError, match="MAILPULSE_SINKS=2 needs a ClickHouse server"):
        Settings.from_env({"MAILPULSE_SINKS": "2"})
