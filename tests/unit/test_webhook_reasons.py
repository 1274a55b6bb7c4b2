"""Provider webhooks map their own bounce classifications onto the reasons, with the providers'
documented example payloads (and the receiver's text deciding where the provider says only "bounce")."""

from __future__ import annotations

from typing import Any

import pytest

from producers.webhooks import mailgun, postmark, sendgrid, ses
from schemas.events import Bounce, Complaint, Deferred, Unsubscribe

SES_BOUNCE: dict[str, Any] = {  # the SES developer guide's bounce notification example
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
        "remoteMtaIp": "127.0.2.0",
        "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "source": "john@example.com",
        "destination": ["jane@example.com"],
        "headers": [{"name": "X-Mailpulse-Campaign", "value": "c1"}, {"name": "X-Mailpulse-Message", "value": "m1"}],
    },
}


def ses_bounce(bounce_type: str, sub_type: str, diagnostic: str, status: str = "5.0.0") -> Bounce:
    payload = {**SES_BOUNCE, "bounce": {**SES_BOUNCE["bounce"], "bounceType": bounce_type, "bounceSubType": sub_type}}
    payload["bounce"]["bouncedRecipients"] = [
        {"emailAddress": "jane@example.com", "status": status, "diagnosticCode": diagnostic}
    ]
    (event,) = ses.normalize(payload)
    assert isinstance(event, Bounce)
    return event


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "diagnostic", "reason", "bounce_class"),
    [
        ("Permanent", "General", "smtp; 550 5.1.1 user unknown", "unknown_user", "hard"),
        # A "general" permanent bounce that is a blocklist refusal is a block: the text decides.
        (
            "Permanent",
            "General",
            "smtp; 554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            "blocked",
            "block",
        ),
        ("Permanent", "General", "", "unknown_user", "hard"),
        ("Permanent", "NoEmail", "", "unknown_user", "hard"),
        ("Permanent", "Suppressed", "Amazon SES has suppressed sending to this address", "provider_suppressed", "hard"),
        ("Permanent", "OnAccountSuppressionList", "", "provider_suppressed", "hard"),
        ("Transient", "MailboxFull", "smtp; 552 5.2.2 Mailbox full", "mailbox_full", "soft"),
        ("Transient", "MessageTooLarge", "smtp; 552 5.3.4 Message too big", "too_big", "block"),
        ("Transient", "ContentRejected", "smtp; 554 5.7.1 content rejected", "policy", "block"),
        (
            "Transient",
            "General",
            "smtp; 421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred",
            "blocked",
            "block",
        ),
        ("Undetermined", "Undetermined", "", "undetermined", "soft"),
    ],
)
def test_ses(bounce_type: str, sub_type: str, diagnostic: str, reason: str, bounce_class: str) -> None:
    event = ses_bounce(bounce_type, sub_type, diagnostic)
    assert (event.reason, event.bounce_class, event.source) == (reason, bounce_class, "ses")


SENDGRID_BOUNCE: dict[str, Any] = {  # SendGrid's Event Webhook reference, bounce event
    "email": "example@test.com",
    "timestamp": 1513299569,
    "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
    "event": "bounce",
    "category": "cat facts",
    "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    "reason": "500 unknown recipient",
    "status": "5.0.0",
    "type": "bounce",
    "bounce_classification": "Invalid Address",
}


@pytest.mark.parametrize(
    ("changes", "reason", "bounce_class"),
    [
        ({}, "unknown_user", "hard"),
        ({"bounce_classification": "Reputation", "reason": "550 5.7.1 blocked"}, "blocked", "block"),
        ({"bounce_classification": "Technical", "reason": "421 timeout"}, "remote_error", "soft"),
        ({"bounce_classification": "Content", "reason": "554 5.7.1 content"}, "policy", "block"),
        ({"bounce_classification": "Frequency or Volume"}, "rate_limited", "soft"),
        ({"bounce_classification": "Mailbox Unavailable"}, "mailbox_disabled", "soft"),
        # "blocked" type: a block, whichever block the text names.
        (
            {"type": "blocked", "bounce_classification": "Unclassified", "reason": "550 5.7.26 DMARC policy"},
            "auth_failure",
            "block",
        ),
        (
            {"type": "blocked", "bounce_classification": "Unclassified", "reason": "550 5.1.1 user unknown"},
            "blocked",
            "block",
        ),
        (
            {"bounce_classification": "Unclassified", "reason": "550 5.1.1 The email account does not exist"},
            "unknown_user",
            "hard",
        ),
        ({"event": "dropped", "reason": "Bounced Address", "type": ""}, "provider_suppressed", "hard"),
        ({"event": "dropped", "reason": "Invalid SMTPAPI header"}, "policy", "block"),
    ],
)
def test_sendgrid(changes: dict[str, Any], reason: str, bounce_class: str) -> None:
    event = sendgrid.normalize({**SENDGRID_BOUNCE, **changes})
    assert isinstance(event, Bounce) and (event.reason, event.bounce_class) == (reason, bounce_class)


def test_sendgrid_dropped_unsubscribe_and_spam_report_and_deferral_reasons() -> None:
    assert isinstance(
        sendgrid.normalize({**SENDGRID_BOUNCE, "event": "dropped", "reason": "Unsubscribed Address"}), Unsubscribe
    )
    assert isinstance(
        sendgrid.normalize({**SENDGRID_BOUNCE, "event": "dropped", "reason": "Spam Reporting Address"}), Complaint
    )
    deferred = sendgrid.normalize({**SENDGRID_BOUNCE, "event": "deferred", "response": "452 4.2.2 Mailbox full"})
    assert isinstance(deferred, Deferred) and deferred.reason == "mailbox_full"


MAILGUN_FAILED: dict[str, Any] = {  # Mailgun's "failed" (permanent) event example
    "event": "failed",
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "timestamp": 1521233195.375624,
    "severity": "permanent",
    "reason": "suppress-bounce",
    "recipient": "alice@example.com",
    "message": {"headers": {"message-id": "20130503192659.13651.20287@sandbox.mailgun.org"}},
    "delivery-status": {
        "attempt-no": 1,
        "code": 605,
        "message": "",
        "description": "Not delivering to previously bounced address",
        "enhanced-code": "",
    },
    "user-variables": {"mailpulse_campaign": "c1", "mailpulse_message": "m1"},
}


@pytest.mark.parametrize(
    ("changes", "status", "kind", "reason"),
    [
        ({}, {}, Bounce, "provider_suppressed"),
        (
            {"reason": "bounce"},
            {
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist",
                "description": "",
            },
            Bounce,
            "unknown_user",
        ),
        (
            {"reason": "generic"},
            {
                "code": 554,
                "message": "5.7.1 Service unavailable; Client host blocked using Barracuda Reputation",
                "description": "",
            },
            Bounce,
            "blocked",
        ),
        ({"reason": "espblock"}, {"code": 605, "description": "Not delivering"}, Bounce, "blocked"),
        ({"reason": "old"}, {"code": 498, "description": "Too old"}, Bounce, "expired"),
        (
            {"severity": "temporary", "reason": "generic"},
            {"code": 452, "message": "4.2.2 Mailbox full"},
            Deferred,
            "mailbox_full",
        ),
    ],
)
def test_mailgun(changes: dict[str, Any], status: dict[str, Any], kind: type, reason: str) -> None:
    data = {**MAILGUN_FAILED, **changes, "delivery-status": {**MAILGUN_FAILED["delivery-status"], **status}}
    event = mailgun.normalize(data)
    assert isinstance(event, kind) and event.reason == reason  # type: ignore[attr-defined]


def test_mailgun_suppressed_complaints_and_unsubscribes_keep_their_meaning() -> None:
    assert isinstance(mailgun.normalize({**MAILGUN_FAILED, "reason": "suppress-complaint"}), Complaint)
    assert isinstance(mailgun.normalize({**MAILGUN_FAILED, "reason": "suppress-unsubscribe"}), Unsubscribe)


POSTMARK_BOUNCE: dict[str, Any] = {  # Postmark's bounce webhook example
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"mailpulse_campaign": "c1", "mailpulse_message": "m1"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "Test bounce details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
}


@pytest.mark.parametrize(
    ("bounce_type", "details", "reason", "bounce_class"),
    [
        ("HardBounce", "Test bounce details", "unknown_user", "hard"),
        ("HardBounce", "smtp;550 5.7.1 Client host [1.2.3.4] blocked using zen.spamhaus.org", "blocked", "block"),
        ("SoftBounce", "smtp;452 4.2.2 Mailbox full", "mailbox_full", "soft"),
        ("Transient", "", "undetermined", "soft"),
        ("BadEmailAddress", "", "invalid_address", "hard"),
        ("AddressChange", "", "address_moved", "hard"),
        ("ManuallyDeactivated", "", "provider_suppressed", "hard"),
        ("Blocked", "smtp;550 5.7.1 Unauthenticated email", "auth_failure", "block"),
        ("Blocked", "smtp;550 5.1.1 user unknown", "blocked", "block"),
        ("SpamNotification", "", "spam", "block"),
        ("VirusNotification", "", "virus", "block"),
        ("DMARCPolicy", "", "auth_failure", "block"),
        ("DnsError", "", "network_error", "soft"),
    ],
)
def test_postmark(bounce_type: str, details: str, reason: str, bounce_class: str) -> None:
    event = postmark.normalize({**POSTMARK_BOUNCE, "Type": bounce_type, "Details": details})
    assert isinstance(event, Bounce) and (event.reason, event.bounce_class) == (reason, bounce_class)


def test_postmark_auto_responders_are_no_bounce() -> None:
    assert postmark.normalize({**POSTMARK_BOUNCE, "Type": "AutoResponder"}) is None
    assert isinstance(postmark.normalize({**POSTMARK_BOUNCE, "Type": "SpamComplaint"}), Complaint)
