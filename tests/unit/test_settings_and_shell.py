from __future__ import annotations

import pytest

from mailpulse.cli import main
from mailpulse.smtp_sink import scripted_reply
from schemas.auth import key_is_valid, presented_key
from schemas.keys import recipient_key
from schemas.settings import DEV_SECRET_KEY, Settings, SettingsError
from schemas.topics import topic_specs


def test_defaults_and_parsing() -> None:
    settings = Settings.from_env({"MAILPULSE_SECRET_KEYS": " new , old ", "MAILPULSE_API_KEYS": "k1,k2"})
    assert settings.secret_keys == ("new", "old") and settings.api_keys == ("k1", "k2")
    assert settings.uses_local_kafka and settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.clickhouse_url.startswith("chdb://") and settings.uses_embedded_clickhouse
    assert Settings.from_env({}).secret_keys == (DEV_SECRET_KEY,)
    remote = Settings.from_env({"MAILPULSE_KAFKA_BOOTSTRAP": "kafka-1:9092"})
    assert not remote.uses_local_kafka and remote.bootstrap_servers == "kafka-1:9092"


@pytest.mark.parametrize(
    "env",
    [
        {"MAILPULSE_EDGE_PORT": "eighty"},
        {"MAILPULSE_TOPIC_PARTITIONS": "0"},
        {"MAILPULSE_KEEP_FULL_IP": "maybe"},
        {"MAILPULSE_LOG_FORMAT": "xml"},
        {"MAILPULSE_ENV": "staging"},
        {"MAILPULSE_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS": "7"},
        {"MAILPULSE_SQL_MAX_SECONDS": "0"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_cli_reports_bad_settings_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILPULSE_EDGE_PORT", "eighty")
    assert main(["status"]) == 2
    assert "MAILPULSE_EDGE_PORT must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["edge", "worker", "up", "run"])
def test_services_refuse_the_development_secret_outside_development(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.delenv("MAILPULSE_SECRET_KEYS", raising=False)
    monkeypatch.delenv("MAILPULSE_ENV", raising=False)
    assert main([command]) == 2
    assert "published development key" in capsys.readouterr().err
    # With the operator's own secret there is nothing to refuse, and a development stack may use it.
    assert not Settings.from_env({"MAILPULSE_SECRET_KEYS": "mine"}).uses_dev_secret
    Settings.from_env({"MAILPULSE_ENV": "development"}).refuse_development_secret()
    with pytest.raises(SettingsError):
        Settings.from_env({"MAILPULSE_SECRET_KEYS": f"mine,{DEV_SECRET_KEY}"}).refuse_development_secret()


def test_cli_send_refuses_a_missing_audience_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--campaign", "c", "--audience", "/nonexistent.csv", "--subject", "s"]) == 2
    assert "cannot read audience" in capsys.readouterr().err


def test_topics_are_partitioned_alike_and_state_topics_compacted() -> None:
    specs = {s.name: s for s in topic_specs(Settings.from_env({"MAILPULSE_TOPIC_PARTITIONS": "12"}))}
    assert specs["mailpulse.events"].partitions == specs["mailpulse.outbox"].partitions == 12
    assert specs["mailpulse.suppression"].compacted and not specs["mailpulse.events"].compacted
    assert specs["mailpulse-processors-suppression-changelog"].compacted


def test_recipient_key_normalizes() -> None:
    assert recipient_key(" Ann@Example.ORG ", "c") == b"ann@example.org"
    assert recipient_key(None, "c1") == b"campaign:c1"


def test_api_keys_compare_in_constant_time_shape() -> None:
    assert key_is_valid("k2", ("k1", "k2")) and not key_is_valid("k3", ("k1", "k2")) and not key_is_valid("", ())
    assert presented_key({"authorization": "Bearer abc"}) == "abc" and presented_key({"x-api-key": "z"}) == "z"


def test_smtp_sink_scripted_replies() -> None:
    seen: set[str] = set()
    assert scripted_reply("hardbounce7@example.org", seen).startswith("550 5.1.1")  # type: ignore[union-attr]
    assert scripted_reply("softbounce@example.org", seen).startswith("452 4.2.2")  # type: ignore[union-attr]
    assert scripted_reply("retryonce@example.org", seen).startswith("451 4.3.0")  # type: ignore[union-attr]
    assert scripted_reply("retryonce@example.org", seen) is None
    assert scripted_reply("someone@example.org", seen) is None
