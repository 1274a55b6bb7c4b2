from __future__ import annotations

import base64

import msgspec
import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import TrackingMode
from schemas.tokens import Authenticated, LinkKind, TokenClaims, TokenCodec, TokenError, TokenExpired, _fernet_key

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


def test_authenticate_checks_the_hmac_and_names_the_key() -> None:
    codec = TokenCodec(["new", "old"])
    new, old = codec.authenticate(codec.mint(CLAIMS)), codec.authenticate(TokenCodec(["old"]).mint(CLAIMS))
    assert new is not None and new.key == 0
    assert old is not None and old.key == 1  # rotated keys are accepted
    token = codec.mint(CLAIMS)
    for bad in (
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        token[:50],
        token[:-22],  # whole blocks cut off: the length is still a Fernet length, the HMAC is not
        "",
        "x" * 5000,
        TokenCodec(["other"]).mint(CLAIMS),
        "!!!!",
        "ünïcode",
    ):
        assert codec.authenticate(bad) is None, bad


@given(
    st.builds(
        TokenClaims,
        st.sampled_from(list(LinkKind)),
        st.text(max_size=40),
        st.text(max_size=40),
        st.text(max_size=40),
        st.one_of(st.none(), st.text(max_size=80)),
        st.one_of(st.none(), st.text(max_size=300)),
        st.sampled_from(list(TrackingMode)),
    ),
    st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3),
)
def test_reading_agrees_with_fernet(claims: TokenClaims, secrets: list[str]) -> None:
    # The read path decrypts by itself (one AES context per key and thread); Fernet is the reference.
    codec = TokenCodec(secrets)
    token = TokenCodec(secrets[-1:]).mint(claims)  # signed by the last key: rotation is exercised too
    fernet = MultiFernet([Fernet(_fernet_key(s)) for s in secrets])
    padded = (token + "=" * (-len(token) % 4)).encode()
    assert codec.read(token, claims.kind) == claims
    assert fernet.decrypt(padded) == msgspec.msgpack.encode(claims)


def test_a_token_decrypted_with_the_wrong_key_is_refused() -> None:
    # Only reachable if an HMAC check were skipped: the padding or the payload then gives it away.
    codec = TokenCodec(["one", "two"])
    found = codec.authenticate(codec.mint(CLAIMS))
    assert found is not None
    with pytest.raises(TokenError):
        codec.open(Authenticated(found.data, 1), LinkKind.OPEN)


def test_pixel_helper_builds_the_open_event() -> None:
    from producers.pixel_offload import open_events

    codec = TokenCodec(["k"])
    found = codec.authenticate(codec.mint(CLAIMS))
    click = codec.authenticate(codec.mint(TokenClaims(LinkKind.CLICK, "m", "c", "l", None, "https://example.com/")))
    assert found is not None and click is not None
    event, not_open = open_events(
        codec, [(*found, "Mozilla/5.0", "17.1.2.3", 1_795_000_000.0), (*click, "", "", 0.0)], keep_full_ip=False
    )
    assert event is not None and event.recipient == CLAIMS.recipient and event.agent_class == "apple_mpp"
    assert event.client_ip == "17.1.2.0" and event.occurred_at.tzinfo is not None
    assert not_open is None


def test_tokens_opened_together_give_what_each_opened_alone_gives() -> None:
    """Several keys (one retired), lengths, a click among opens, a token whose key index is wrong: each
    answer is the one :meth:`TokenCodec.open` gives, in the order asked."""
    codec, old = TokenCodec(["new", "old"]), TokenCodec(["old"])
    long_claims = TokenClaims(LinkKind.OPEN, "m" * 300, "c", "l", "someone.with.a.long.name@example.org")
    minted = [
        codec.mint(CLAIMS),
        old.mint(CLAIMS),
        codec.mint(long_claims),
        codec.mint(TokenClaims(LinkKind.CLICK, "m", "c", "l", None, "https://example.com/")),
        old.mint(long_claims),
    ]
    tokens = [codec.authenticate(token) for token in minted]
    assert all(tokens)
    found = [t for t in tokens if t is not None]
    found.append(Authenticated(found[0].data, 1))  # the first key's token read with the second key

    def alone(token: Authenticated) -> TokenClaims | str:
        try:
            return codec.open(token, LinkKind.OPEN)
        except TokenError as exc:
            return type(exc).__name__

    together = [c if isinstance(c, TokenClaims) else type(c).__name__ for c in codec.open_all(found, LinkKind.OPEN)]
    assert together == [alone(t) for t in found]
    assert together == [CLAIMS, CLAIMS, long_claims, "TokenError", long_claims, "TokenError"]


def test_pixel_paths_match_like_the_route() -> None:
    from producers.tracking_routes import pixel_token

    assert pixel_token("/o/abc_-123.gif") == "abc_-123"
    for path in ("/o/.gif", "/o/a/b.gif", "/o/abc.png", "/c/abc.gif", "/o/abc.gif/", "/oo/abc.gif"):
        assert pixel_token(path) is None, path


def test_successive_tokens_are_each_fernet_with_their_own_iv() -> None:
    # Minting runs one CBC encryptor on across tokens: every token must still decrypt on its own.
    codec = TokenCodec(["k"])
    fernet = Fernet(_fernet_key("k"))
    ivs = set()
    for size in [0, 1, 15, 16, 17, 31, 32, 33, 200] * 20:
        claims = TokenClaims(LinkKind.CLICK, "m", "c", "l", None, "https://example.com/" + "x" * size)
        token = codec.mint(claims)
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ivs.add(data[9:25])
        assert fernet.decrypt(base64.urlsafe_b64encode(data)) == msgspec.msgpack.encode(claims)
    assert len(ivs) == 180  # a fresh random IV per token


def test_tokens_are_minted_under_a_key_derived_for_links_alone_and_legacy_tokens_still_read() -> None:
    from schemas.key_derivation import Purpose, derive_key
    from schemas.tokens import _legacy_fernet_key

    token = TokenCodec(["s3cret"]).mint(CLAIMS)
    padded = (token + "=" * (-len(token) % 4)).encode()
    # Exactly Fernet under the HKDF key of the link-token purpose, and under no other.
    link_key = base64.urlsafe_b64encode(derive_key("s3cret", Purpose.LINK_TOKENS))
    assert msgspec.msgpack.decode(Fernet(link_key).decrypt(padded), type=TokenClaims) == CLAIMS
    other = base64.urlsafe_b64encode(derive_key("s3cret", Purpose.WORKER_FORWARDING))
    with pytest.raises(InvalidToken):
        Fernet(other).decrypt(padded)
    with pytest.raises(InvalidToken):
        Fernet(_legacy_fernet_key("s3cret")).decrypt(padded)
    # A link minted before the change (the secret's SHA-256 as the Fernet key) still opens.
    legacy = Fernet(_legacy_fernet_key("s3cret")).encrypt(msgspec.msgpack.encode(CLAIMS)).decode().rstrip("=")
    assert TokenCodec(["s3cret"]).read(legacy, LinkKind.OPEN) == CLAIMS


def test_a_maximum_age_refuses_older_links_of_that_kind_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import tokens

    codec = TokenCodec(["k"], max_age={LinkKind.CLICK: 3600})
    click = TokenClaims(LinkKind.CLICK, "m", "c", "news", "a@example.org", url="https://example.com/")
    real_time = tokens.time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real_time() - 7200)
    old_click, old_open = codec.mint(click), codec.mint(CLAIMS)
    monkeypatch.setattr(tokens.time, "time", real_time)
    with pytest.raises(TokenExpired, match="expired"):
        codec.read(old_click, LinkKind.CLICK)
    assert codec.read(old_open, LinkKind.OPEN) == CLAIMS
    assert codec.read(codec.mint(click), LinkKind.CLICK) == click
    # No maximum: any age is accepted.
    assert TokenCodec(["k"]).read(old_click, LinkKind.CLICK) == click
