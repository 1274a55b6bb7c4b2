"""Provider webhooks and bounce mail on the real edge: what arrives on the events topic, and that nothing
arrives for rejected input."""

from __future__ import annotations

import json
import time

import httpx
from starlette.testclient import TestClient

from producers.app import create_public_app
from schemas.settings import Settings
from tests.integration.helpers import TopicReader, arrived, edge, suppression, unique, wait_until
from tests.support.webhook_signing import (
    SNS_CERT_URL,
    mailgun_signature,
    postmark_header,
    sendgrid_headers,
    sns_key_and_cert,
    sns_message,
)


def test_sendgrid_batch_is_verified_and_normalized(stack: Settings, events: TopicReader) -> None:
    campaign = unique("sg")
    who = f"{unique('sg')}@example.org"
    meta = {"mailpulse_campaign": campaign, "mailpulse_message": "m-sg"}
    batch = [
        {"email": who, "event": "delivered", "sg_event_id": "e1", "timestamp": int(time.time()), **meta},
        {"email": who, "event": "open", "sg_event_id": "e2", "timestamp": int(time.time()), "useragent": "UA", **meta},
        {
            "email": who,
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 unknown",
            "sg_event_id": "e3",
            "timestamp": int(time.time()),
            **meta,
        },
        {"email": who, "event": "processed", "sg_event_id": "e4", "timestamp": int(time.time()), **meta},
    ]
    body = json.dumps(batch).encode()
    url = f"{edge(stack)}/webhooks/sendgrid"
    tampered = body.replace(b"5.1.1", b"5.1.2")
    assert httpx.post(url, content=tampered, headers=sendgrid_headers(body)).status_code == 401
    assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 401
    stale = sendgrid_headers(body, timestamp=int(time.time()) - 3600)
    assert httpx.post(url, content=body, headers=stale).status_code == 401
    answer = httpx.post(url, content=body, headers=sendgrid_headers(body))
    assert answer.status_code == 200 and answer.json() == {"accepted": 3}
    got = arrived(events, campaign, 3)
    assert sorted(e.kind for e in got) == ["bounce", "delivered", "open"]
    bounce = next(e for e in got if e.kind == "bounce")
    assert bounce.recipient == who and bounce.bounce_class == "hard" and bounce.status == "5.1.1"  # type: ignore[union-attr]
    assert arrived(events, campaign, 1, seconds=2) == []  # the rejected posts published nothing
    state = wait_until(lambda: (s := suppression(stack, who)) and s["suppressed"] and s, what="suppression")
    assert state["reasons"] == ["hard_bounce"]


def test_sendgrid_batch_of_its_full_documented_size_is_accepted(stack: Settings, events: TopicReader) -> None:
    # SendGrid posts once a batch reaches 768 KB and retries a 413 until it drops the batch.
    campaign = unique("sgbig")
    now = int(time.time())
    batch = []
    for i in range(1700):
        batch.append(
            {
                "email": f"reader{i}@example.org",
                "timestamp": now,
                "smtp-id": f"<{campaign}.{i}@ismtpd0001p1iad2.sendgrid.net>",
                "event": "open" if i % 2 else "delivered",
                "category": ["newsletter", "december"],
                "sg_event_id": f"{campaign}-{i}-ZGVsaXZlcmVkLTAtMjQ5NzE2MDctNnE",
                "sg_message_id": f"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.{i}",
                "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
                "ip": "255.255.255.255",
                "response": "250 2.0.0 OK 1700000000 d2si1234567qkb.123 - gsmtp",
                "mailpulse_campaign": campaign,
                "mailpulse_message": f"m-{i}",
            }
        )
    body = json.dumps(batch).encode()
    assert 768_000 < len(body) < 2 << 20, len(body)
    url = f"{edge(stack)}/webhooks/sendgrid"
    answer = httpx.post(url, content=body, headers=sendgrid_headers(body), timeout=60)
    assert answer.status_code == 200 and answer.json() == {"accepted": len(batch)}, answer.text[:200]
    assert len(arrived(events, campaign, len(batch), seconds=60)) == len(batch)
    # The route's limit still holds above it, and every other route keeps the small default.
    huge = b"[" + b'{"event":"open"},' * 200_000 + b"{}]"
    assert httpx.post(url, content=huge, headers=sendgrid_headers(huge), timeout=60).status_code == 413
    big = b"List-Unsubscribe=One-Click&pad=" + b"x" * (stack.max_body_bytes + 1)
    assert httpx.post(f"{edge(stack)}/u/token", content=big, timeout=30).status_code == 413


def test_mailgun_signature_window_and_replay(stack: Settings, events: TopicReader) -> None:
    campaign = unique("mg")
    who = f"{unique('mg')}@example.org"
    data = {
        "event": "complained",
        "id": unique("mgid"),
        "timestamp": time.time(),
        "recipient": who,
        "user-variables": {"mailpulse_campaign": campaign, "mailpulse_message": "m-mg"},
    }
    url = f"{edge(stack)}/webhooks/mailgun"
    token = unique("token")
    good = {"signature": mailgun_signature(token), "event-data": data}
    assert (
        httpx.post(url, json={"signature": mailgun_signature(token, key="wrong"), "event-data": data}).status_code
        == 401
    )
    assert (
        httpx.post(
            url, json={"signature": mailgun_signature(unique("t"), int(time.time()) - 7200), "event-data": data}
        ).status_code
        == 401
    )
    assert httpx.post(url, json=good).status_code == 200
    assert httpx.post(url, json=good).status_code == 401  # replayed token
    assert httpx.post(url, content=b"[]", headers={"Content-Type": "application/json"}).status_code == 400
    got = arrived(events, campaign, 1)
    assert [e.kind for e in got] == ["complaint"] and got[0].recipient == who
    assert arrived(events, campaign, 1, seconds=2) == []


def test_postmark_basic_auth(stack: Settings, events: TopicReader) -> None:
    campaign = unique("pm")
    who = f"{unique('pm')}@example.org"
    record = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": 42,
        "Email": who,
        "MessageID": "pm-1",
        "BouncedAt": "2026-11-26T10:00:00Z",
        "Details": "smtp;550 5.1.1 unknown",
        "Metadata": {"mailpulse_campaign": campaign, "mailpulse_message": "m-pm"},
    }
    url = f"{edge(stack)}/webhooks/postmark"
    assert httpx.post(url, json=record).status_code == 401
    assert httpx.post(url, json=record, headers=postmark_header("postmark:wrong")).status_code == 401
    assert httpx.post(url, json=record, headers=postmark_header()).status_code == 200
    got = arrived(events, campaign, 1)
    assert [(e.kind, e.bounce_class) for e in got] == [("bounce", "hard")]  # type: ignore[union-attr]


def test_ses_via_sns_signature_versions_and_confirmation(stack: Settings, events: TopicReader) -> None:
    _, cert = sns_key_and_cert()
    fetched: list[str] = []
    confirmed: list[str] = []

    def certificates(url: str) -> bytes:
        fetched.append(url)
        assert url == SNS_CERT_URL
        return cert

    # In-process app with the real Kafka publisher; only the two SNS network calls are local.
    app = create_public_app(stack, sns_certificates=certificates, sns_confirm=confirmed.append)
    campaign = unique("ses")
    who = f"{unique('ses')}@example.org"
    notification = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "feedbackId": unique("fb"),
            "timestamp": "2026-11-26T10:00:00.000Z",
            "bouncedRecipients": [{"emailAddress": who, "status": "5.1.1", "diagnosticCode": "smtp; 550"}],
        },
        "mail": {
            "messageId": "ses-1",
            "headers": [
                {"name": "X-Mailpulse-Campaign", "value": campaign},
                {"name": "X-Mailpulse-Message", "value": "m-ses"},
            ],
        },
    }
    with TestClient(app) as client:
        subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
        confirm = sns_message("SubscriptionConfirmation", "confirm", SubscribeURL=subscribe, Token="abc")
        assert client.post("/webhooks/ses", content=json.dumps(confirm)).status_code == 200
        assert confirmed == [subscribe]
        for version in ("1", "2"):
            message = sns_message("Notification", notification, version=version)
            assert client.post("/webhooks/ses", content=json.dumps(message)).status_code == 200
        forged = sns_message("Notification", notification)
        forged["Message"] = forged["Message"].replace("Permanent", "Transient")
        assert client.post("/webhooks/ses", content=json.dumps(forged)).status_code == 401
        elsewhere = sns_message("Notification", notification)
        elsewhere["SigningCertURL"] = "https://evil.example.com/cert.pem"
        assert client.post("/webhooks/ses", content=json.dumps(elsewhere)).status_code == 401
        other_topic = sns_message("Notification", notification, TopicArn="arn:aws:sns:eu-west-1:1:other")
        assert client.post("/webhooks/ses", content=json.dumps(other_topic)).status_code == 403
        assert client.post("/webhooks/ses", content=b"not json").status_code == 400
    got = arrived(events, campaign, 2)
    # Both signature versions carried the same SES event: one event id, so state counts it once.
    assert [e.kind for e in got] == ["bounce", "bounce"] and got[0].event_id == got[1].event_id
    assert got[0].recipient == who and got[0].message_id == "m-ses"
    assert set(fetched) == {SNS_CERT_URL}
    assert arrived(events, campaign, 1, seconds=2) == []


def test_ses_is_off_until_topics_are_allowed_and_certificate_trouble_is_no_500(stack: Settings) -> None:
    """Issue 20 item 2: with no allow-list any AWS account's topic could suppress anyone; and a certificate
    that cannot be fetched or read is SNS's retry (503) or a refusal (401), never a 500."""
    import dataclasses

    _, cert = sns_key_and_cert()
    fetched: list[str] = []

    def certificates(url: str) -> bytes:
        fetched.append(url)
        return cert

    notification = {"notificationType": "Delivery", "mail": {"messageId": "x"}, "delivery": {"recipients": []}}
    message = json.dumps(sns_message("Notification", notification))
    unconfigured = create_public_app(dataclasses.replace(stack, sns_topic_arns=()), sns_certificates=certificates)
    with TestClient(unconfigured) as client:
        answer = client.post("/webhooks/ses", content=message)
    assert answer.status_code == 403 and fetched == []

    def unreachable(url: str) -> bytes:
        raise httpx.ConnectError("connection refused")

    with TestClient(create_public_app(stack, sns_certificates=unreachable), raise_server_exceptions=False) as client:
        answer = client.post("/webhooks/ses", content=message)
    assert answer.status_code == 503 and answer.headers.get("retry-after")
    with TestClient(
        create_public_app(stack, sns_certificates=lambda url: b"not a pem"), raise_server_exceptions=False
    ) as client:
        assert client.post("/webhooks/ses", content=message).status_code == 401
    foreign = json.dumps(sns_message("Notification", notification, TopicArn="arn:aws:sns:eu-west-1:1:other"))
    fetched.clear()
    with TestClient(create_public_app(stack, sns_certificates=certificates)) as client:
        assert client.post("/webhooks/ses", content=foreign).status_code == 403
    assert fetched == []  # a topic not allowed is refused before any certificate is fetched


def test_mailgun_redelivery_after_a_503_is_accepted_and_odd_signatures_are_401(stack: Settings) -> None:
    """Issue 20 item 8: the replay guard remembered a token before the publish succeeded, so the identical
    redelivery after a 503 got 401 and the event was lost; a non-ASCII signature gave 500."""
    import dataclasses

    data = {"event": "delivered", "id": unique("mg"), "timestamp": time.time(), "recipient": "a@example.org"}
    body = {"signature": mailgun_signature(unique("tok")), "event-data": data}
    # A broker nobody listens on: Kafka cannot acknowledge, the edge answers 503 and Mailgun retries.
    down = create_public_app(dataclasses.replace(stack, kafka_bootstrap="127.0.0.1:9", publish_timeout_seconds=0.5))
    back = create_public_app(stack)
    back.state.edge.mailgun_replays = down.state.edge.mailgun_replays  # one edge process, its Kafka back
    with TestClient(down, raise_server_exceptions=False) as client:
        assert client.post("/webhooks/mailgun", json=body).status_code == 503
    with TestClient(back, raise_server_exceptions=False) as client:
        assert client.post("/webhooks/mailgun", json=body).status_code == 200  # the retry, published now
        assert client.post("/webhooks/mailgun", json=body).status_code == 401  # a replay once it is in
        odd = {"signature": {**mailgun_signature(unique("tok")), "signature": "é" * 64}, "event-data": data}
        assert client.post("/webhooks/mailgun", json=odd).status_code == 401
