"""Operator sessions and sign-in links: what opens the pages, and what closes them again."""

from __future__ import annotations

import time
from urllib.parse import unquote

import pytest

from producers.operator_session import LINK_SECONDS, csrf_ok, open_session, read_link, sign_in_link, signed_in


def test_a_session_holds_for_its_key_only_and_ends_when_the_key_is_removed() -> None:
    session: dict[str, object] = {}
    open_session(session, "key-a")
    assert signed_in(session, ["key-b", "key-a"])
    assert not signed_in(session, ["key-b"])  # key-a removed from MAILPULSE_API_KEYS: the session is closed
    assert not signed_in({"operator": "made-up"}, ["key-a"]) and not signed_in({}, ["key-a"])
    assert csrf_ok(session, str(session["csrf"])) and not csrf_ok(session, "guessed") and not csrf_ok(session, None)


def test_a_sign_in_link_opens_one_page_for_a_few_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    link = sign_in_link("key-a", "http://127.0.0.1:8081", "/ui/campaigns/autumn/report")
    token = unquote(link.split("link=", 1)[1])
    assert read_link(token, ["key-b", "key-a"]) == ("key-a", "/ui/campaigns/autumn/report")
    assert read_link(token, ["key-b"]) is None  # made with a key that is not (or no longer) an operator's
    assert read_link(token[:-2] + "xx", ["key-a"]) is None
    outside = unquote(sign_in_link("key-a", "http://x", "/campaigns").split("link=", 1)[1])
    assert read_link(outside, ["key-a"]) is None  # links open pages, nothing else
    later = time.time() + LINK_SECONDS + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert read_link(token, ["key-a"]) is None
