from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailpulse.cli import main
from mailpulse.smtp_sink import scripted_reply
from processors.faust_store import state_topic_specs
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
    settings = Settings.from_env({"MAILPULSE_TOPIC_PARTITIONS": "12"})
    specs = {s.name: s for s in [*topic_specs(settings), *state_topic_specs(settings)]}
    assert specs["mailpulse.events"].partitions == specs["mailpulse.outbox"].partitions == 12
    assert specs["mailpulse.suppression"].compacted and not specs["mailpulse.events"].compacted
    assert specs["mailpulse-processors-suppression-changelog"].compacted
    assert specs["mailpulse-processors-engagement-changelog"].partitions == 12


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


def test_the_settings_page_is_generated_from_the_declarations() -> None:
    from mailpulse.settings_doc import settings_markdown
    from schemas.settings import declarations

    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    assert page == settings_markdown(), "docs/settings.md is stale: run `make docs`"
    for _, declared in declarations():
        assert f"`{declared.env}`" in page and declared.doc and declared.services


def test_each_setting_is_parsed_from_its_variable_once_with_its_declared_default() -> None:
    from schemas.settings import declarations

    defaults = Settings.from_env({})
    for field, declared in declarations():
        assert declared.env.startswith("MAILPULSE_")
        if declared.derive is None:
            assert getattr(defaults, field.name) == field.default, declared.env
    # A bad value names its variable and stops with status 2.
    with pytest.raises(SettingsError, match="MAILPULSE_SMTP_CONNECTIONS must be at least 1"):
        Settings.from_env({"MAILPULSE_SMTP_CONNECTIONS": "0"})
    assert main(["settings"]) == 0


def test_every_command_has_an_example_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    from mailpulse.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        assert "example:\n  mailpulse " in command.format_help() or "example:\n  mailpulse" in command.epilog, name


def test_output_piped_into_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    # A command printing far more than a pipe holds, read by `head -1`, which closes the pipe after a line.
    program = (
        "import mailpulse.commands as c\n"
        "c.cmd_settings = lambda args, settings: [print('row', n) for n in range(1_000_000)] and 0\n"
        "from mailpulse.cli import main\n"
        "raise SystemExit(main(['settings']))\n"
    )
    env = {**os.environ, "MAILPULSE_VAR_DIR": str(tmp_path)}
    shell = f'{sys.executable} -c "$PROGRAM" | head -1'
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env={**env, "PROGRAM": program}, timeout=60
    )
    assert done.stdout == "row 0\n"
    assert done.stderr == "", done.stderr  # no traceback, no "Exception ignored" at exit


def test_the_local_stack_key_is_made_once_and_found_by_the_commands(tmp_path: Path) -> None:
    from mailpulse.errors import CliError
    from mailpulse.operator_key import key_file, operator_headers, operator_keys, stack_keys

    settings = Settings.from_env({"MAILPULSE_VAR_DIR": str(tmp_path)})
    with pytest.raises(CliError, match="no operator API key"):
        operator_headers(settings)
    made = stack_keys(settings)
    assert stack_keys(settings) == made == operator_keys(settings)  # kept, not made again
    assert oct(key_file(settings).stat().st_mode & 0o777) == "0o600"
    assert operator_headers(settings) == {"Authorization": f"Bearer {made[0]}"}
    own = Settings.from_env({"MAILPULSE_VAR_DIR": str(tmp_path), "MAILPULSE_API_KEYS": "mine"})
    assert stack_keys(own) == operator_keys(own) == ("mine",)  # an operator's own key wins, and is not stored
    assert key_file(own).read_text().strip() == made[0]


def test_private_listeners_stay_on_this_machine_unless_opened_and_a_worker_announces_a_reachable_name() -> None:
    import socket

    default = Settings.from_env({})
    assert default.private_host == "127.0.0.1" and default.worker_advertised_host == "127.0.0.1"
    opened = Settings.from_env({"MAILPULSE_PRIVATE_HOST": "0.0.0.0"})
    assert opened.worker_advertised_host == socket.gethostname()
    named = Settings.from_env({"MAILPULSE_PRIVATE_HOST": "0.0.0.0", "MAILPULSE_WORKER_ADVERTISED_HOST": "worker-3"})
    assert named.worker_advertised_host == "worker-3"
