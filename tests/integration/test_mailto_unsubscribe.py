"""The mailto: URI of a message's List-Unsubscribe, used as a mail client uses it: a mail sent to it."""

from __future__ import annotations

import re
import smtplib
import time

import pytest

from schemas.settings import Settings
from tests.integration.helpers import maildir_messages, post_campaign, report, suppression, unique, wait_until

NOTE = b"From: reader@example.org\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n"


def mailto_of(stack: Settings, recipient: str, campaign: str) -> str:
    messages = wait_until(lambda: maildir_messages(stack, recipient=recipient, campaign=campaign), what="the mail")
    found = re.search(r"<mailto:([^?>]+)", str(messages[0]["List-Unsubscribe"]))
    assert found is not None, messages[0]["List-Unsubscribe"]
    return found.group(1)


def test_a_mail_to_the_messages_mailto_address_unsubscribes_its_recipient_within_a_second(stack: Settings) -> None:
    campaign = unique("mailto")
    reader, other = f"{unique('reader')}@example.org", f"{unique('other')}@example.org"
    assert post_campaign(stack, campaign, [reader, other]).status_code == 202
    address, others = mailto_of(stack, reader, campaign), mailto_of(stack, other, campaign)
    assert reader.split("@")[0] not in address and len(address.partition("@")[0]) <= 64  # opaque, RFC 5321 size
    wait_until(lambda: report(stack, campaign)["sent"] == 2, what="the sends stored")
    # A tampered token is refused at RCPT and publishes nothing.
    tampered = others[:20] + ("a" if others[20] != "a" else "b") + others[21:]
    with smtplib.SMTP("127.0.0.1", stack.bounce_smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("someone@example.net", [tampered], NOTE)
        assert refused.value.recipients[tampered][0] == 550
        # The real one: the same mail a client sends from the person's mailbox (from any address).
        smtp.sendmail("reader@elsewhere.example", [address.upper()], NOTE)  # relays may fold the case
        accepted = time.monotonic()
    state = wait_until(lambda: (s := suppression(stack, reader)) and s["suppressed"] and s, timeout=5, interval=0.02)
    assert time.monotonic() - accepted < 1.0
    assert state["reasons"] == ["unsubscribed:news"]  # the list of the message, as the one-click POST does
    assert not suppression(stack, other)["suppressed"]
    # Delivered again (a retry after a lost answer), it is the same event.
    with smtplib.SMTP("127.0.0.1", stack.bounce_smtp_port, timeout=10) as smtp:
        smtp.sendmail("reader@elsewhere.example", [address], NOTE)
    unsubscribes = wait_until(lambda: (r := report(stack, campaign)) and r["unsubscribes"] == 1 and r, timeout=10)
    assert unsubscribes["unsubscribes"] == 1
