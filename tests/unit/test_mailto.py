"""The per-message mailto: unsubscribe addresses: opaque, short, authentic, rotatable."""

from __future__ import annotations

import pytest

from schemas.mailto import MailtoAddresses, MailtoError, is_unsubscribe_address

MESSAGE = "4f2b9c0d1e2a4b6c8d0e1f2a3b4c5d6e"


def test_an_address_names_its_message_only_and_fits_a_local_part() -> None:
    address = MailtoAddresses(["current", "previous"]).address(MESSAGE, "bounces.example.com")
    local, _, domain = address.partition("@")
    assert domain == "bounces.example.com" and local.startswith("unsubscribe+") and len(local) <= 64
    assert local == local.lower() and MESSAGE not in local  # nothing readable: not even the message id
    assert MailtoAddresses(["current"]).message_id(address) == MESSAGE
    assert MailtoAddresses(["current"]).message_id(address.upper()) == MESSAGE  # a relay may fold the case
    assert is_unsubscribe_address(f"<{address}>")


def test_rotation_and_forgeries() -> None:
    old = MailtoAddresses(["previous"]).address(MESSAGE, "d.example")
    assert MailtoAddresses(["current", "previous"]).message_id(old) == MESSAGE  # minted before a rotation
    with pytest.raises(MailtoError):
        MailtoAddresses(["someone-else"]).message_id(old)
    local = old.partition("@")[0]
    for bad in (
        local[:-1] + ("a" if local[-1] != "a" else "b"),  # one character changed
        local[:-2],  # truncated
        "unsubscribe+" + "0" * 42,  # well formed, not ours
        "unsubscribe+" + "!" * 42,  # not base32
        "bounces+x",
    ):
        with pytest.raises(MailtoError):
            MailtoAddresses(["previous"]).message_id(f"{bad}@d.example")
    with pytest.raises(ValueError):
        MailtoAddresses(["k"]).address("not-hex", "d.example")
