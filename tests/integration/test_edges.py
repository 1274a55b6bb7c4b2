"""The edge's answers to valid, tampered and malformed input, checked against the real events topic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec
from schemas.topics import Topics
from tests.integration.helpers import TopicReader, operator_headers, unique, wait_until
from tests.support.worker_process import metric_value


def edge(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.edge_port}"


def operator(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.operator_port}"


@pytest.fixture
def events(stack: Settings) -> TopicReader:
    reader = TopicReader(stack, Topics.for_prefix(stack.topic_prefix).events)
    yield reader  # type: ignore[misc]
    reader.close()


def _claims(kind: LinkKind, campaign: str, **extra: str) -> TokenClaims:
    return TokenClaims(kind, unique("m"), campaign, "news", f"{unique('p')}@example.org", **extra)


def test_rejected_tokens_publish_nothing(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("tamper")
    good = codec.mint(_claims(LinkKind.OPEN, campaign))
    tampered = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    foreign = TokenCodec(["someone-elses-key"]).mint(_claims(LinkKind.OPEN, campaign))
    wrong_kind = codec.mint(_claims(LinkKind.CLICK, campaign, url="https://example.com/"))
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
    marker = codec.mint(_claims(LinkKind.OPEN, campaign))
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
    old = TokenCodec([stack.secret_keys[1]]).mint(_claims(LinkKind.OPEN, campaign))
    assert httpx.get(f"{edge(stack)}/o/{old}.gif").status_code == 200
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    assert [e.kind for e in arrived if e.campaign_id == campaign] == ["open"]


def test_click_redirects_only_to_the_sealed_url(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("click")
    token = codec.mint(_claims(LinkKind.CLICK, campaign, url="https://example.com/a?b=1"))
    answer = httpx.get(f"{edge(stack)}/c/{token}?url=https://evil.example/", headers={"User-Agent": "curl/8.0"})
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://example.com/a?b=1"
    arrived = events.events(20, until=lambda evs: any(e.campaign_id == campaign for e in evs))
    click = next(e for e in arrived if e.campaign_id == campaign)
    assert click.kind == "click" and click.agent_class == "bot"  # type: ignore[union-attr]


def test_unsubscribe_page_changes_nothing_and_bad_posts_are_refused(stack: Settings, events: TopicReader) -> None:
    codec = TokenCodec(stack.secret_keys)
    campaign = unique("unsub")
    token = codec.mint(_claims(LinkKind.UNSUBSCRIBE, campaign))
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


def test_unsubscribe_answers_503_with_retry_after_when_kafka_cannot_acknowledge(tmp_path: object) -> None:
    from starlette.testclient import TestClient

    from producers.app import create_public_app

    # A real producer pointed at a port where no broker listens.
    dead = Settings.from_env(
        {
            "MAILPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "MAILPULSE_PUBLISH_TIMEOUT_SECONDS": "1",
            "MAILPULSE_SECRET_KEYS": "k",
        }
    )
    token = TokenCodec(["k"]).mint(_claims(LinkKind.UNSUBSCRIBE, "dead"))
    with TestClient(create_public_app(dead)) as client:
        answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert client.get("/readyz").status_code == 503
        # The pixel never waits for Kafka.
        assert client.get(f"/o/{TokenCodec(['k']).mint(_claims(LinkKind.OPEN, 'dead'))}.gif").status_code == 200


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
    fresh_click = codec.mint(_claims(LinkKind.CLICK, "aged", url="https://example.com/"))
    real_time = time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real_time() - 91 * 86_400)
    old_click = codec.mint(_claims(LinkKind.CLICK, "aged", url="https://example.com/"))
    # Unsubscribe links have no maximum age unless one is set: years later they still work.
    old_unsubscribe = codec.mint(_claims(LinkKind.UNSUBSCRIBE, "aged"))
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _pixel_helpers(pid: int) -> list[int]:
    """The edge's pixel helper (a spawned child; the other child is multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def test_a_long_broker_outage_never_freezes_the_edge_and_every_shed_or_lost_event_is_counted(
    stack: Settings, tmp_path: Path
) -> None:
    """Issue 20 item 6: with the broker gone, a full queue made the edge spin on its event loop and a full
    pipe to the pixel helper block it: unsubscribes and webhooks hung instead of answering 503, and opens
    expired in the queue uncounted."""
    ports = [_free_port() for _ in range(2)]
    env = {
        **os.environ,
        "MAILPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",  # nobody listens: the outage
        "MAILPULSE_EDGE_PORT": str(ports[0]),
        "MAILPULSE_OPERATOR_PORT": str(ports[1]),
        "MAILPULSE_BOUNCE_SMTP_PORT": "0",
        "MAILPULSE_PUBLISH_TIMEOUT_SECONDS": "1",
        "MAILPULSE_EDGE_QUEUE_MAX_MESSAGES": "200",
        "MAILPULSE_EDGE_DELIVERY_TIMEOUT_SECONDS": "3",
        "MAILPULSE_VAR_DIR": str(tmp_path),
        "MAILPULSE_LOG_FORMAT": "text",
    }
    base, operator_url = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    log = (tmp_path / "edge.log").open("wb")
    edge_process = subprocess.Popen([sys.executable, "-m", "mailpulse", "edge"], env=env, stdout=log, stderr=log)
    codec = TokenCodec(stack.secret_keys)
    try:
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=60, what="the edge up")
        helpers = wait_until(lambda: _pixel_helpers(edge_process.pid), timeout=30, what="the pixel helper")
        os.kill(helpers[0], signal.SIGSTOP)  # a helper that reads nothing: the pipe fills
        slow: list[tuple[str, float, int]] = []
        stop = threading.Event()

        def timed(name: str, call: Callable[[], httpx.Response]) -> None:
            started = time.monotonic()
            try:
                status = call().status_code
            except httpx.HTTPError:
                status = 0
            slow.append((name, time.monotonic() - started, status))

        def probe() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    url = f"{base}/u/{codec.mint(_claims(LinkKind.UNSUBSCRIBE, 'outage'))}"
                    timed("unsubscribe", lambda: client.post(url, data={"List-Unsubscribe": "One-Click"}))  # noqa: B023
                    timed("healthz", lambda: client.get(f"{base}/healthz"))
                    time.sleep(0.2)

        prober = threading.Thread(target=probe)
        prober.start()
        with httpx.Client(timeout=5) as client:
            click = codec.mint(_claims(LinkKind.CLICK, "outage", url="https://example.com/"))
            pixel = codec.mint(_claims(LinkKind.OPEN, "outage"))
            for _ in range(600):
                assert client.get(f"{base}/c/{click}", follow_redirects=False).status_code == 302
            # Past the delivery timeout, and long enough for several unsubscribes to be probed meanwhile
            # (each waits out the 1 s publish timeout: 8,000 pixels alone once took under 5 s).
            started, sent = time.monotonic(), 0
            while sent < 8000 or time.monotonic() - started < 8.0:
                assert client.get(f"{base}/o/{pixel}.gif").status_code == 200
                sent += 1
        stop.set()
        prober.join()
        os.kill(helpers[0], signal.SIGCONT)
        unsubscribes = [(seconds, status) for name, seconds, status in slow if name == "unsubscribe"]
        health = [seconds for name, seconds, status in slow if name == "healthz" and status == 200]
        assert len(unsubscribes) >= 5 and all(status == 503 for _, status in unsubscribes), unsubscribes[:5]
        assert max(seconds for seconds, _ in unsubscribes) < 2.5, max(unsubscribes)
        assert len(health) == len(unsubscribes) and max(health) < 1.0

        def counted() -> dict[str, float]:
            text = httpx.get(f"{operator_url}/metrics", headers=operator_headers(stack), timeout=5).text
            names = (
                "mailpulse_edge_events_shed_total",
                "mailpulse_edge_pixel_opens_shed_total",
                "mailpulse_edge_publish_failures_total",
                "mailpulse_edge_pixel_opens_lost_total",
            )
            return {name: metric_value(text, name) for name in names}

        # Clicks past the queue's bound shed, opens the stuck helper could not take shed; what waited in a
        # queue past the delivery timeout is counted lost.
        totals = wait_until(lambda: (c := counted()) and all(c.values()) and c, timeout=30, what="every count")
        assert totals["mailpulse_edge_events_shed_total"] >= 600 - 200 - 5
        assert totals["mailpulse_edge_pixel_opens_shed_total"] > 0
    finally:
        for helper in _pixel_helpers(edge_process.pid) if edge_process.poll() is None else []:
            os.kill(helper, signal.SIGCONT)
        edge_process.terminate()
        try:
            edge_process.wait(60)
        except subprocess.TimeoutExpired:
            edge_process.kill()
            edge_process.wait(10)
        log.close()
