"""Relays as they are: TLS and AUTH before the pipelined transactions, SMTPUTF8 or not, unreachable."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailpulse.smtp_sink import MaildirHandler
from processors.mailer import SmtpMailer
from tests.support.certificates import self_signed
from tests.support.smtp_relays import OneAtATimeHandler, QuirkyHandler, free_port, send_all, serve, stored


def test_a_relay_that_is_unreachable_is_no_possible_duplicate() -> None:
    outcomes, _ = send_all(SmtpMailer(f"smtp://127.0.0.1:{free_port()}"), ["reader@example.org"])
    assert outcomes[0].code == 0 and "connection failed" in outcomes[0].reply and not outcomes[0].after_content


def relay_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own issuer: the relay's, and the client's only trusted one."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(
        key,
        "relay.test",
        [
            (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
            (x509.BasicConstraints(ca=True, path_length=None), True),
        ],
    )
    cert_file, key_file = folder / "relay.pem", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def only_relay_user(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object) -> AuthResult:
    return AuthResult(success=data == LoginPassword(b"relay-user", b"s@cret"), handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS: it is all TLS
@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_pipelined_transactions_run_inside_tls_after_auth(
    tmp_path: Path, maildir: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    cert_file, key_file = relay_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the client's default context trusts only this relay
    options: dict[str, object] = {"auth_required": True, "authenticator": only_relay_user}
    if scheme == "smtp+starttls":
        options.update(tls_context=server_tls, require_starttls=True)
    else:
        options.update(auth_require_tls=False)  # aiosmtpd counts only STARTTLS as TLS; here all of it is
    port = free_port()
    controller = Controller(
        QuirkyHandler(maildir),
        hostname="127.0.0.1",
        port=port,
        ssl_context=server_tls if scheme == "smtps" else None,
        **options,
    )
    controller.start()
    try:
        outcomes, pipelined = send_all(
            SmtpMailer(f"{scheme}://relay-user:s%40cret@127.0.0.1:{port}"),
            ["reader@example.org", "hardbounce@example.org", "last@example.org"],
        )
    finally:
        controller.stop()

    assert [o.code for o in outcomes] == [250, 550, 250], outcomes
    assert pipelined
    assert sorted(m["Delivered-To"] for m in stored(maildir)) == ["last@example.org", "reader@example.org"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_an_internationalized_address_goes_where_the_relay_offers_smtputf8_and_is_never_a_bad_address(
    maildir: Path, pipelining: bool
) -> None:
    from processors.delivery import verdict_of
    from schemas.bounce_reasons import BounceClass

    handler = MaildirHandler(maildir) if pipelining else OneAtATimeHandler(maildir)
    for url in serve(handler, enable_SMTPUTF8=False):
        outcomes, _ = send_all(SmtpMailer(url, pipelining=pipelining), ["jörg@bücher.example", "reader@example.org"])
        assert outcomes[0].code == 553 and outcomes[0].stage == "mail", outcomes[0]
        assert verdict_of(outcomes[0]).reason.bounce_class is BounceClass.BLOCK  # our relay's limit: nobody suppressed
        assert outcomes[1].code == 250
    for url in serve(handler, enable_SMTPUTF8=True):
        outcomes, _ = send_all(SmtpMailer(url, pipelining=pipelining), ["jörg@bücher.example"])
        assert outcomes[0].code == 250, outcomes[0]
    assert sorted(m["Delivered-To"] for m in stored(maildir)) == ["jörg@bücher.example", "reader@example.org"]
