"""The edge's answers to valid, tampered and malformed input, checked against the real events topic."""

from __future__ import annotations

import time

import httpx
import pytest

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenCodec
from schemas.topics import Topics
from tests.integration.helpers import TopicReader, edge, link_claims, operator, operator_headers, unique


@pytest.fixture
def events(stack: Settings) -> TopicReader:
    reader = TopicReader(stack, Topics.for_prefix(stack.topic_prefix).events)
    yield reader  # type: ignore[misc]
    reader.close()


def test_rejected_tokens_publish_nothing(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("tamper")
    good = codec.mint(link_claims(LinkKind.OPEN, campaign))
    tampered = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    foreign = TokenCodec(["someone-elses-key"]).mint(link_claims(LinkKind.OPEN, campaign))
    wrong_kind = codec.mint(link_claims(LinkKind.CLICK, campaign, url="https://example.com/"))
    for token in (tampered, good[:40], foreign, "not-a-token", "x" * 5000):
        answer = httpx.get(f"{edge(stack)}/o/{token}.gif")
        assert answer.status_code in (404, 413, 414), token
        assert "token" in answer.text or answer.status_code != 404
    # An authentic token of another link kind: the pixel answers (it only checks authenticity in the
    # request), the helper refuses it and publishes nothing; the click route decrypts and refuses at once.
    assert httpx.get(f"{edge(stack)}/o/{wrong_kind}.gif").status_code == 200
    assert httpx.get(f"{edge(stack)}/c/{good}").status_code == 404
    assert httpx.get(f"{edge(stack)}/c/{tampered}").status_code == 404
    assert httpx.post(f"{edge(stack)}/u/{tampered}", data={"List-Unsubscribe": "One-Click"}).status_code == 404

    # A valid marker after the bad ones: only the marker may arrive.
    marker = codec.mint(link_claims(LinkKind.OPEN, campaign))
    assert httpx.get(f"{edge(stack)}/o/{marker}.gif").status_code == 200
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    mine = [e for e in arrived if e.campaign_id == campaign]
    assert len(mine) == 1 and mine[0].kind == "open"

    # The public edge does not publish its counts; the operator edge does, behind the key.
    assert httpx.get(f"{edge(stack)}/metrics").status_code == 404
    assert httpx.get(f"{operator(stack)}/metrics").status_code == 401
    metrics = httpx.get(f"{operator(stack)}/metrics", headers=operator_headers(stack)).text
    assert 'mailpulse_edge_rejected_tokens_total{route="open"}' in metrics
    # Pixels are answered ahead of the middleware stack and still counted like every route.
    for status in ("200", "404"):
        assert f'mailpulse_edge_requests_total{{route="open_pixel",status="{status}"}}' in metrics
    assert 'mailpulse_edge_request_seconds_count{route="open_pixel"}' in metrics
    refused = [line for line in metrics.splitlines() if line.startswith("mailpulse_edge_pixel_tokens_refused_total")]
    assert refused and float(refused[0].split()[-1]) >= 1


def test_rotated_keys_still_accepted(stack: Settings, events: TopicReader) -> None:
    campaign = unique("rotate")
    # Minted with the older (second) key: still accepted while it is listed.
    old = TokenCodec([stack.secret_keys[1]]).mint(link_claims(LinkKind.OPEN, campaign))
    assert httpx.get(f"{edge(stack)}/o/{old}.gif").status_code == 200
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    assert [e.kind for e in arrived if e.campaign_id == campaign] == ["open"]


def test_click_redirects_only_to_the_sealed_url(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("click")
    token = codec.mint(link_claims(LinkKind.CLICK, campaign, url="https://example.com/a?b=1"))
    answer = httpx.get(f"{edge(stack)}/c/{token}?url=https://evil.example/", headers={"User-Agent": "curl/8.0"})
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://example.com/a?b=1"
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    click = next(e for e in arrived if e.campaign_id == campaign)
    assert click.kind == "click" and click.agent_class == "bot"  # type: ignore[union-attr]


def test_unsubscribe_page_changes_nothing_and_bad_posts_are_refused(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("unsub")
    token = codec.mint(link_claims(LinkKind.UNSUBSCRIBE, campaign))
    page = httpx.get(f"{edge(stack)}/u/{token}")
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert httpx.post(f"{edge(stack)}/u/{token}", data={"something": "else"}).status_code == 400
    assert (
        httpx.post(f"{edge(stack)}/u/{token}", content=b"{}", headers={"content-type": "application/json"}).status_code
        == 415
    )
    assert (
        httpx.post(
            f"{edge(stack)}/u/{token}",
            content=b"x" * (stack.max_body_bytes + 1),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 413
    )
    # multipart/form-data one-click, as some mailbox providers send it
    done = httpx.post(f"{edge(stack)}/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert done.status_code == 200
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    assert [e.kind for e in arrived if e.campaign_id == campaign] == ["unsubscribe"]


def test_operator_routes_refuse_without_a_valid_key(stack: Settings) -> None:
    body = {"campaign_id": "x", "subject": "s", "text": "t", "recipients": [{"email": "a@example.org"}]}
    assert httpx.post(f"{operator(stack)}/campaigns", json=body).status_code == 401
    assert httpx.post(f"{operator(stack)}/campaigns", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{stack.sink_api_port}/reports/x").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/suppression/a@example.org").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/feeds").status_code == 401
    # The public app has no operator routes at all.
    assert httpx.post(f"{edge(stack)}/campaigns", json=body).status_code in (404, 405)


def test_campaign_intake_refuses_bad_input_with_reasons(stack: Settings) -> None:
    headers = {"Authorization": f"Bearer {stack.api_keys[1]}"}
    url = f"{operator(stack)}/campaigns"
    assert httpx.post(url, content=b"{not json", headers=headers).status_code == 400
    injected = {
        "campaign_id": "c1",
        "subject": "Hi\r\nBcc: victim@example.org",
        "text": "t",
        "recipients": [{"email": "a@example.org"}],
    }
    answer = httpx.post(url, json=injected, headers=headers)
    assert answer.status_code == 422 and "header injection" in answer.json()["error"]
    mixed = {
        "campaign_id": unique("mixed"),
        "subject": "Hi",
        "text": "t",
        "recipients": [{"email": "ok@example.org"}, {"email": "bad@@example"}, {"email": "OK@example.org"}],
    }
    answer = httpx.post(url, json=mixed, headers=headers)
    assert answer.status_code == 202
    assert answer.json()["queued"] == 1 and answer.json()["duplicates"] == 1
    assert answer.json()["rejected"][0]["row"] == 2


def test_sql_route_is_read_only(stack: Settings) -> None:
    headers = {"Authorization": f"Bearer {stack.api_keys[0]}"}
    url = f"http://127.0.0.1:{stack.sink_api_port}/sql"
    assert httpx.post(url, content=b"SELECT count() FROM events", headers=headers).status_code == 200
    for statement in (
        b"DROP TABLE events",
        b"INSERT INTO events (event_id) VALUES ('x')",
        b"SELECT 1; DROP TABLE events",
        b"ALTER TABLE events DELETE WHERE 1",
    ):
        assert httpx.post(url, content=statement, headers=headers).status_code == 403, statement
    assert httpx.post(url, content=b"SELECT nonsense FROM nowhere", headers=headers).status_code == 400


def test_links_past_their_maximum_age_get_410_and_publish_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from producers.app import create_public_app
    from schemas import tokens

    settings = Settings.from_env(
        {
            "MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "MAILPULSE_PUBLISH_TIMEOUT_SECONDS": "1",
            "MAILPULSE_SECRET_KEYS": "k",
            "MAILPULSE_CLICK_TOKEN_MAX_AGE_DAYS": "90",
        }
    )
    codec = tokens.token_codec(settings)
    fresh_click = codec.mint(link_claims(LinkKind.CLICK, "aged", url="https://example.com/"))
    real_time = time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real_time() - 91 * 86_400)
    old_click = codec.mint(link_claims(LinkKind.CLICK, "aged", url="https://example.com/"))
    # Unsubscribe links have no maximum age unless one is set: years later they still work.
    old_unsubscribe = codec.mint(link_claims(LinkKind.UNSUBSCRIBE, "aged"))
    monkeypatch.setattr(tokens.time, "time", real_time)
    with TestClient(create_public_app(settings)) as client:
        assert client.get(f"/c/{fresh_click}", follow_redirects=False).status_code == 302
        expired = client.get(f"/c/{old_click}", follow_redirects=False)
        assert expired.status_code == 410 and "expired" in expired.text
        assert client.get(f"/u/{old_unsubscribe}").status_code == 200


def test_openapi_describes_every_route(stack: Settings) -> None:
    public = httpx.get(f"{edge(stack)}/openapi.json").json()
    assert {
        "/o/{token}.gif",
        "/c/{token}",
        "/u/{token}",
        "/webhooks/ses",
        "/webhooks/sendgrid",
        "/webhooks/mailgun",
        "/webhooks/postmark",
        "/healthz",
        "/readyz",
    } <= set(public["paths"])
    assert "/metrics" not in public["paths"]
    operator_spec = httpx.get(f"{operator(stack)}/openapi.json").json()
    assert "/campaigns" in operator_spec["paths"] and operator_spec["security"] == [{"bearer": []}]
    assert "/metrics" in operator_spec["paths"]


def test_the_worker_tells_an_operator_what_each_feed_reads(stack: Settings) -> None:
    answer = httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/feeds", headers=operator_headers(stack), timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    held = body["worker"]["partitions"]
    assert held and not body["worker"]["rebalancing"]
    assert set(body["feeds"]) == {"events", "rollup", "sender", "retries", "held"}
    # One worker holds every partition, and every feed reads what the worker holds.
    assert all(feed["reads"] == held for feed in body["feeds"].values())
    assert body["feeds"]["retries"]["topic"] == Topics.for_prefix(stack.topic_prefix).retry
