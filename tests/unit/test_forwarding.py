from __future__ import annotations

from processors.forwarding import HEADER, MAX_AGE_SECONDS, forward_headers, is_forwarded

SECRETS = ("current", "previous")
PATH = "/suppression/a%40example.org"


def test_a_forwarded_lookup_carries_a_signature_of_its_path_and_no_api_key() -> None:
    headers = forward_headers(SECRETS, PATH, now=1_000_000.0)
    assert set(headers) == {HEADER}
    assert "authorization" not in {k.lower() for k in headers} and "x-api-key" not in {k.lower() for k in headers}
    assert is_forwarded(SECRETS, headers[HEADER], PATH, now=1_000_005.0)


def test_the_signature_holds_for_its_path_for_a_short_time_under_the_shared_secrets_only() -> None:
    value = forward_headers(SECRETS, PATH, now=1_000_000.0)[HEADER]
    assert not is_forwarded(SECRETS, value, "/stats/other-campaign", now=1_000_000.0)
    assert not is_forwarded(SECRETS, value, PATH, now=1_000_000.0 + MAX_AGE_SECONDS + 1)
    assert not is_forwarded(("someone-else",), value, PATH, now=1_000_000.0)
    # Rotation: a worker still on the previous secret is understood by one that lists both.
    older = forward_headers(("previous",), PATH, now=1_000_000.0)[HEADER]
    assert is_forwarded(SECRETS, older, PATH, now=1_000_000.0)
    for bad in (None, "", "1", "x.y", "1000000.", "1000000." + "0" * 64, "1000000.ünï"):
        assert not is_forwarded(SECRETS, bad, PATH, now=1_000_000.0), bad
