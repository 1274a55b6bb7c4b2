"""One real local stack for the whole integration session, on its own ports and var dir.

Kafka (KRaft, from the Maven jars), the faust worker, the sink into
chdb, the edge and the aiosmtpd SMTP sink all run as the same processes
`make up` starts; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpulse.stack import Stack
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.helpers import TopicReader
from tests.support.reply_corpus import smtp_replies
from tests.support.smtp_relays import OneAtATimeHandler, QuirkyHandler, serve
from tests.support.webhook_signing import MAILGUN_KEY, POSTMARK_AUTH, TOPIC_ARN, dkim_keys, sendgrid_keys

ROOT = Path(__file__).resolve().parents[2]
DKIM_KEY_FILE = ROOT / "var" / "test-keys" / "dkim.pem"
# What the SMTP sink answers beside its built-in scripts: every reply of the corpus, and a blocked domain.
SINK_REPLIES = ROOT / "var" / "test-keys" / "smtp-sink-replies.tsv"
BLOCK_REPLY = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"


def scripted_replies() -> list[tuple[str, str, str, str]]:
    """(recipient, stage, expected reason, reply) for each corpus reply the sink can give (at RCPT or DATA)."""
    return [
        (f"reply-{number:03d}@replies.example", stage, reason, reply)
        for number, (stage, reason, reply) in enumerate(smtp_replies())
        if stage in ("rcpt", "data")
    ]


def write_sink_replies() -> None:
    lines = [f"{rcpt}\t{stage}\t{reply}" for rcpt, stage, _, reply in scripted_replies()]
    lines.append(f"*@blocked.example\trcpt\t{BLOCK_REPLY}")
    SINK_REPLIES.write_text("\n".join(lines) + "\n")


TEST_ENV = {
    "MAILPULSE_VAR_DIR": str(ROOT / "var" / "test"),
    "MAILPULSE_LOCAL_KAFKA_PORT": "19092",
    "MAILPULSE_SMTP_URL": "smtp://127.0.0.1:12525",
    "MAILPULSE_SMTP_SINK_PORT": "12525",
    "MAILPULSE_EDGE_PORT": "18080",
    "MAILPULSE_OPERATOR_PORT": "18081",
    "MAILPULSE_SINK_API_PORT": "18082",
    "MAILPULSE_WORKER_WEB_PORT": "16066",
    "MAILPULSE_API_KEYS": "test-operator-key,second-key",
    "MAILPULSE_SECRET_KEYS": "test-secret-new,test-secret-old",
    "MAILPULSE_RETRY_BASE_SECONDS": "0.5",
    "MAILPULSE_MAX_SEND_ATTEMPTS": "3",
    "MAILPULSE_COMPLAINT_ALERT_MIN_DELIVERED": "50",
    "MAILPULSE_DOMAIN_RATE_LIMITS": "ratelimited.example=4",
    "MAILPULSE_SINK_BATCH_SECONDS": "0.2",
    "MAILPULSE_KAFKA_BOOTSTRAP": "",
    "MAILPULSE_CLICKHOUSE_URL": "",
    "MAILPULSE_LOG_FORMAT": "json",
    "MAILPULSE_BOUNCE_SMTP_PORT": "12526",
    "MAILPULSE_BOUNCE_MAX_BYTES": str(1 << 20),
    "MAILPULSE_SENDGRID_PUBLIC_KEY": sendgrid_keys()[1],
    "MAILPULSE_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
    "MAILPULSE_POSTMARK_WEBHOOK_AUTH": POSTMARK_AUTH,
    "MAILPULSE_SNS_TOPIC_ARNS": TOPIC_ARN,
    "MAILPULSE_DKIM_SELECTOR": "test2026",
    "MAILPULSE_DKIM_DOMAIN": "example.com",
    "MAILPULSE_DKIM_PRIVATE_KEY_FILE": str(DKIM_KEY_FILE),
    "MAILPULSE_SMTP_SINK_REPLIES": str(SINK_REPLIES),
}


def fresh_stack(environ: dict[str, str]) -> Iterator[Settings]:
    """A stack started on empty storage (a fresh broker, store and Maildir: tests never see an earlier run's
    data), stopped when the caller is done with it."""
    settings = Settings.from_env(environ)
    stack = Stack(settings, say=print, environ=environ)
    stack.down()
    shutil.rmtree(settings.var_dir, ignore_errors=True)
    try:
        stack.up(timeout=180)
        yield settings
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    DKIM_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    DKIM_KEY_FILE.write_bytes(dkim_keys()[0])
    write_sink_replies()
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    try:
        yield from fresh_stack(dict(os.environ))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def events(stack: Settings) -> Iterator[TopicReader]:
    """What arrives on the events topic from the start of the test on."""
    reader = TopicReader(stack, Topics.for_prefix(stack.topic_prefix).events)
    yield reader
    reader.close()


# Real SMTP relays for the mailer's tests (tests/support/smtp_relays.py), each storing in its own Maildir.
@pytest.fixture()
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture()
def quirky(maildir: Path) -> Iterator[str]:
    yield from serve(QuirkyHandler(maildir))


@pytest.fixture()
def one_at_a_time(maildir: Path) -> Iterator[str]:
    yield from serve(OneAtATimeHandler(maildir))
