"""Bounce and complaint mail through the edge's SMTP receiver and `mailpulse ingest-mail`."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import httpx

from schemas.attribution import BounceAddresses
from schemas.settings import Settings
from tests.integration.helpers import (
    BOUNCE_SAMPLES,
    TopicReader,
    arrived,
    operator_headers,
    sql,
    suppression,
    unique,
    wait_until,
)


def test_bounce_mail_over_smtp_is_recorded_and_non_bounces_are_kept(stack: Settings, events: TopicReader) -> None:
    sample = (BOUNCE_SAMPLES / "postfix_user_unknown.eml").read_bytes()
    campaign = unique("dsn")
    who, forged_for = f"{unique('dsn')}@example.org", f"{unique('victim')}@example.org"
    raw = sample.replace(b"autumn-2026", campaign.encode()).replace(b"nobody@example.org", who.encode())
    forged = sample.replace(b"autumn-2026", campaign.encode()).replace(b"nobody@example.org", forged_for.encode())
    message = "4f2b9c0d1e2a4b6c8d0e1f2a3b4c5d6e"
    ours = BounceAddresses(stack.secret_keys).address(message, who, stack.bounce_domain)

    def crlf(data: bytes) -> bytes:  # what an MTA puts on the wire
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    with smtplib.SMTP("127.0.0.1", stack.bounce_smtp_port, timeout=10) as smtp:
        smtp.sendmail("", [ours], crlf(raw))
        # Anyone can write a report naming any address: the bare message id proves nothing.
        smtp.sendmail("", [f"bounces+{message}@{stack.bounce_domain}"], crlf(forged))
        smtp.sendmail("", ["bounces@bounces.example.com"], crlf((BOUNCE_SAMPLES / "out_of_office.eml").read_bytes()))
        stray = b"From: someone@example.net\r\nSubject: hello\r\n\r\nIs this the right address for invoices?\r\n"
        smtp.sendmail("someone@example.net", ["bounces@bounces.example.com"], stray)
    got = arrived(events, campaign, 2)
    assert sorted((e.kind, e.recipient, e.status, e.reason, e.attributed) for e in got) == sorted(  # type: ignore[union-attr]
        [("bounce", who, "5.1.1", "unknown_user", True), ("bounce", forged_for, "5.1.1", "unknown_user", False)]
    )
    assert {e.message_id for e in got} == {message}
    wait_until(lambda: suppression(stack, who)["suppressed"], what="suppression from a DSN")
    # The forged one is recorded (and visible in SQL) but suppresses nobody.
    rows = wait_until(
        lambda: sql(
            stack, f"SELECT recipient, attributed FROM events WHERE campaign_id = '{campaign}' ORDER BY attributed"
        ),
        what="both reports stored",
    )
    assert [(r["recipient"], r["attributed"]) for r in rows] == [(forged_for, False), (who, True)]
    assert not suppression(stack, forged_for)["suppressed"]
    kept = stack.var_dir / "bounces" / "unparsed" / "new"
    # Mail that is no report is kept for a person; an auto-reply is known for what it is and is not.
    wait_until(lambda: any(b"right address for invoices" in p.read_bytes() for p in kept.iterdir()), what="kept")
    assert not any(b"Out of office" in p.read_bytes() for p in kept.iterdir())


def test_the_receiver_takes_mail_only_for_the_bounce_domain_and_within_its_size(stack: Settings) -> None:
    with smtplib.SMTP("127.0.0.1", stack.bounce_smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        code, _ = smtp.docmd("MAIL FROM:<>")
        assert code == 250
        code, reply = smtp.docmd("RCPT TO:<postmaster@example.net>")
        assert code == 550 and b"No such mailbox" in reply
        code, _ = smtp.docmd(f"RCPT TO:<bounces+x@{stack.bounce_domain.upper()}>")
        assert code == 250
        smtp.rset()
        too_large = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (stack.bounce_max_bytes // 1000 + 10)
        try:
            smtp.sendmail("", [f"bounces@{stack.bounce_domain}"], too_large)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            assert exc.smtp_code == 552  # at MAIL FROM ... SIZE= when declared, else after the content
        else:
            raise AssertionError("a message over MAILPULSE_BOUNCE_MAX_BYTES was taken")
    metrics = httpx.get(f"http://127.0.0.1:{stack.operator_port}/metrics", headers=operator_headers(stack)).text
    assert 'mailpulse_edge_bounce_mail_total{outcome="refused_rcpt"}' in metrics


def test_ingest_mail_cli_reads_an_arf_report(stack: Settings, events: TopicReader, tmp_path: Path) -> None:
    campaign = unique("arf")
    sample = (BOUNCE_SAMPLES / "arf_abuse.eml").read_bytes().replace(b"autumn-2026", campaign.encode())
    done = subprocess.run(
        [sys.executable, "-m", "mailpulse", "ingest-mail", "-"], input=sample, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert b"arf report: published 1 event" in done.stdout
    # The sample names its message by a bare id only: recorded, suppressing nobody.
    assert b"suppressing nobody" in done.stdout
    got = arrived(events, campaign, 1)
    assert [(e.kind, e.recipient) for e in got] == [("complaint", "angry.reader@example.com")]
    assert not got[0].attributed  # type: ignore[union-attr]
    # A pipe that passes the envelope recipient (the bounce address made for that message and recipient).
    verp = BounceAddresses(stack.secret_keys).address(
        "cafebabecafebabecafebabecafebabe", "angry.reader@example.com", stack.bounce_domain
    )
    proven = sample.replace(b"Subject: complaint", b"Message-ID: <other-report@hotmail.example>\nSubject: complaint")
    done = subprocess.run(
        [sys.executable, "-m", "mailpulse", "ingest-mail", "--recipient", verp, "-"],
        input=proven,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and b"suppressing nobody" not in done.stdout, done.stdout
    got = arrived(events, campaign, 1)
    assert [(e.kind, e.attributed) for e in got] == [("complaint", True)]  # type: ignore[union-attr]
    empty = subprocess.run(
        [sys.executable, "-m", "mailpulse", "ingest-mail", str(tmp_path / "missing.eml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode == 2 and "cannot read" in empty.stderr
