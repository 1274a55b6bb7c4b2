from __future__ import annotations

import time

import pytest

from producers.webhooks import mailgun, postmark, sendgrid
from producers.webhooks.common import SignatureError
from producers.webhooks.ses import is_sns_url, string_to_sign, verify
from tests.support.webhook_signing import (
    MAILGUN_KEY,
    POSTMARK_AUTH,
    mailgun_signature,
    postmark_header,
    sendgrid_headers,
    sendgrid_keys,
    sns_key_and_cert,
    sns_message,
)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/x.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/x.pem", True),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.io/x.pem", False),
        ("https://evil.io/sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x", False),
    ],
)
def test_sns_certificate_host_is_pinned(url: str, ok: bool) -> None:
    assert is_sns_url(url) is ok


def test_sns_canonical_string_skips_absent_subject() -> None:
    text = string_to_sign(
        {"Type": "Notification", "Message": "m", "MessageId": "i", "Timestamp": "t", "TopicArn": "a"}
    ).decode()
    assert text == "Message\nm\nMessageId\ni\nTimestamp\nt\nTopicArn\na\nType\nNotification\n"


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signatures_verify_and_tampering_fails(version: str) -> None:
    _, cert = sns_key_and_cert()
    message = sns_message("Notification", {"a": 1}, version=version)
    verify(message, lambda url: cert)
    with pytest.raises(SignatureError):
        verify({**message, "Message": '{"a": 2}'}, lambda url: cert)
    with pytest.raises(SignatureError):
        verify({**message, "SignatureVersion": "3"}, lambda url: cert)


def test_sendgrid_signature() -> None:
    key = sendgrid.load_public_key(sendgrid_keys()[1])
    body = b'[{"event":"open"}]'
    headers = {k.lower(): v for k, v in sendgrid_headers(body).items()}
    sendgrid.verify(key, body, headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER], 600)
    with pytest.raises(SignatureError):
        sendgrid.verify(key, body + b" ", headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER], 600)
    with pytest.raises(SignatureError):
        sendgrid.verify(key, body, "", "", 600)


def test_mailgun_replay_guard_and_window() -> None:
    guard = mailgun.ReplayGuard(window=600)
    signature = mailgun_signature("tok-1")
    mailgun.verify(MAILGUN_KEY, signature, guard, 600)
    mailgun.verify(MAILGUN_KEY, signature, guard, 600)  # not accepted yet (its publish failed): no replay
    guard.remember("tok-1", time.time())
    with pytest.raises(SignatureError, match="replayed"):
        mailgun.verify(MAILGUN_KEY, signature, guard, 600)
    with pytest.raises(SignatureError, match="window"):
        mailgun.verify(MAILGUN_KEY, mailgun_signature("tok-2", timestamp=1), guard, 600)
    with pytest.raises(SignatureError, match="does not verify"):
        mailgun.verify(MAILGUN_KEY, {**mailgun_signature("tok-3"), "signature": "é" * 64}, guard, 600)
    fresh = mailgun.ReplayGuard(window=600)
    fresh.remember("old", 0.0)
    assert fresh.seen("old", 1.0)
    assert not fresh.seen("old", 10_000.0)  # forgotten once outside the window


def test_postmark_basic_auth() -> None:
    postmark.verify(postmark_header()["Authorization"], POSTMARK_AUTH)
    for bad in ("", "Basic !!!", postmark_header("postmark:nope")["Authorization"]):
        with pytest.raises(SignatureError):
            postmark.verify(bad, POSTMARK_AUTH)
