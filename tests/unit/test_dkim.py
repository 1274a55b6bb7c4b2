from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import dkim

from processors.dkim_signing import DkimSigner
from processors.render import RenderContext, render_message
from schemas.attribution import BounceAddresses
from schemas.events import SendRequest
from schemas.mailto import MailtoAddresses
from schemas.tokens import TokenCodec
from tests.support.webhook_signing import dkim_keys


def test_signed_message_verifies_and_covers_the_unsubscribe_headers() -> None:
    private, record = dkim_keys()
    request = SendRequest(
        message_id="a" * 32,
        campaign_id="c",
        recipient="r@example.org",
        list_id="news",
        from_address="News <news@example.com>",
        subject="Hello",
        html="<p>Hi</p>",
        text="Hi",
        enqueued_at=datetime(2026, 11, 26, tzinfo=UTC),
    )
    rendered = render_message(
        request,
        RenderContext(
            TokenCodec(["k"]),
            "https://t.example",
            "bounces.example.com",
            BounceAddresses(["k"]),
            "bounces.example.com",
            MailtoAddresses(["k"]),
        ),
    )
    signer = DkimSigner("s2026", "example.com", private)
    signed = signer.sign(rendered.data)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.example.com."
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    header = email.message_from_bytes(signed, policy=email.policy.default)["DKIM-Signature"]
    signed_headers = header.split("h=")[1].split(";")[0].replace(" ", "").lower().split(":")
    assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= set(signed_headers)
    # Changing a signed header breaks the signature.
    assert not dkim.verify(signed.replace(b"Subject: Hello", b"Subject: Hellp"), dnsfunc=dns)
