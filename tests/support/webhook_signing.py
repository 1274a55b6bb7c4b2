"""What the providers do on their side: sign webhook payloads, with keys made for the tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from producers.webhooks.ses import string_to_sign
from tests.support.certificates import self_signed

SNS_CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
MAILGUN_KEY = "mailgun-test-signing-key"
POSTMARK_AUTH = "postmark:s3cret-pass"


@cache
def sns_key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "sns.amazonaws.com")
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sns_message(kind: str, payload: dict[str, Any] | str, version: str = "2", **extra: str) -> dict[str, Any]:
    key, _ = sns_key_and_cert()
    message: dict[str, Any] = {
        "Type": kind,
        "MessageId": f"msg-{time.time_ns()}",
        "TopicArn": TOPIC_ARN,
        "Message": payload if isinstance(payload, str) else json.dumps(payload),
        "Timestamp": "2026-11-26T10:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": SNS_CERT_URL,
        **extra,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


@cache
def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(public).decode()


def sendgrid_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    key, _ = sendgrid_keys()
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def mailgun_signature(token: str, timestamp: int | None = None, key: str = MAILGUN_KEY) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp, "token": token, "signature": digest}


def postmark_header(auth: str = POSTMARK_AUTH) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


@cache
def dkim_keys() -> tuple[bytes, bytes]:
    """PEM private key and the DNS TXT record that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
