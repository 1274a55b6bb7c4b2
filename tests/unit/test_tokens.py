from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import TrackingMode
from schemas.tokens import LinkKind, TokenClaims, TokenCodec, TokenError

CLAIMS = TokenClaims(LinkKind.OPEN, "m" * 32, "spring-2026", "news", "Alice.Person@example.org")


def test_round_trip_and_opacity() -> None:
    codec = TokenCodec(["k1"])
    token = codec.mint(CLAIMS)
    assert codec.read(token, LinkKind.OPEN) == CLAIMS
    assert "@" not in token and "example" not in token
    # Not even base64 of the address: the payload is encrypted.
    padded = token + "=" * (-len(token) % 4)
    assert b"example.org" not in base64.urlsafe_b64decode(padded)


def test_rotation_signs_with_first_and_accepts_all() -> None:
    old = TokenCodec(["old"]).mint(CLAIMS)
    rotated = TokenCodec(["new", "old"])
    assert rotated.read(old, LinkKind.OPEN) == CLAIMS
    new_token = rotated.mint(CLAIMS)
    assert TokenCodec(["new"]).read(new_token, LinkKind.OPEN) == CLAIMS
    with pytest.raises(TokenError):
        TokenCodec(["old"]).read(new_token, LinkKind.OPEN)


@pytest.mark.parametrize("mangle", [lambda t: t[:-1], lambda t: t[:20], lambda t: t[:-5] + "AAAAA", lambda t: ""])
def test_tampered_and_truncated_tokens_fail(mangle: object) -> None:
    codec = TokenCodec(["k"])
    token = codec.mint(CLAIMS)
    with pytest.raises(TokenError):
        codec.read(mangle(token), LinkKind.OPEN)  # type: ignore[operator]


def test_wrong_link_kind_fails() -> None:
    codec = TokenCodec(["k"])
    with pytest.raises(TokenError, match="not valid for this link"):
        codec.read(codec.mint(CLAIMS), LinkKind.UNSUBSCRIBE)


def test_aggregate_claims_carry_no_recipient() -> None:
    codec = TokenCodec(["k"])
    claims = TokenClaims(LinkKind.CLICK, "m", "c", "l", None, "https://example.com/", TrackingMode.AGGREGATE)
    assert codec.read(codec.mint(claims), LinkKind.CLICK).recipient is None


@given(st.text(max_size=300))
def test_arbitrary_strings_never_crash(token: str) -> None:
    with pytest.raises(TokenError):
        TokenCodec(["k"]).read(token, LinkKind.OPEN)


def test_authentic_checks_the_hmac_without_decrypting() -> None:
    codec = TokenCodec(["new", "old"])
    assert codec.authentic(codec.mint(CLAIMS))
    assert codec.authentic(TokenCodec(["old"]).mint(CLAIMS))  # rotated keys are accepted
    token = codec.mint(CLAIMS)
    for bad in (
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        token[:50],
        "",
        "x" * 5000,
        TokenCodec(["other"]).mint(CLAIMS),
        "!!!!",
    ):
        assert not codec.authentic(bad)


def test_pixel_helper_builds_the_open_event() -> None:
    from producers.pixel_offload import open_event_for_hit

    codec = TokenCodec(["k"])
    event = open_event_for_hit(
        codec, (codec.mint(CLAIMS), "Mozilla/5.0", "17.1.2.3", 1_795_000_000.0), keep_full_ip=False
    )
    assert event is not None and event.recipient == CLAIMS.recipient and event.agent_class == "apple_mpp"
    assert event.client_ip == "17.1.2.0" and event.occurred_at.tzinfo is not None
    click = TokenClaims(LinkKind.CLICK, "m", "c", "l", None, "https://example.com/")
    assert open_event_for_hit(codec, (codec.mint(click), "", "", 0.0), keep_full_ip=False) is None


def test_pixel_paths_match_like_the_route() -> None:
    from producers.tracking_routes import pixel_token

    assert pixel_token("/o/abc_-123.gif") == "abc_-123"
    for path in ("/o/.gif", "/o/a/b.gif", "/o/abc.png", "/c/abc.gif", "/o/abc.gif/", "/oo/abc.gif"):
        assert pixel_token(path) is None, path
