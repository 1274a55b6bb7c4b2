"""Generated requests against every route of the running edge: at least 1,000, and never a 5xx."""

from __future__ import annotations

import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.settings import Settings
from schemas.tokens import LinkKind, TokenClaims, TokenCodec

COUNT = {"requests": 0, "5xx": 0}
TEXT = st.text(alphabet=string.printable, max_size=300)
TOKENISH = st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=400), TEXT)
BODY = st.one_of(
    st.binary(max_size=2000),
    TEXT.map(str.encode),
    st.just(b'{"Type":"Notification"}'),
    st.just(b"[]"),
    st.just(b"List-Unsubscribe=One-Click"),
)
CONTENT_TYPE = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "",
        "image/png",
    ]
)
ROUTES = st.sampled_from(
    [
        ("GET", "/o/{}.gif"),
        ("GET", "/c/{}"),
        ("GET", "/u/{}"),
        ("POST", "/u/{}"),
        ("POST", "/webhooks/ses"),
        ("POST", "/webhooks/sendgrid"),
        ("POST", "/webhooks/mailgun"),
        ("POST", "/webhooks/postmark"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("PUT", "/u/{}"),
        ("GET", "/{}"),
    ]
)


def _client(stack: Settings) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=10)


def test_generated_requests_never_get_a_5xx(stack: Settings) -> None:
    codec = TokenCodec(stack.secret_keys)
    valid = {
        kind: codec.mint(TokenClaims(kind, "m", "fuzz", "news", "fuzz@example.org", "https://example.com/"))
        for kind in LinkKind
    }

    with _client(stack) as client:

        @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(
            route=ROUTES,
            token=st.one_of(TOKENISH, st.sampled_from(list(valid.values()))),
            body=BODY,
            content_type=CONTENT_TYPE,
            user_agent=TEXT,
            mangle=st.integers(0, 3),
        )
        def one(
            route: tuple[str, str], token: str, body: bytes, content_type: str, user_agent: str, mangle: int
        ) -> None:
            method, template = route
            if mangle == 1 and token in valid.values():
                token = token[:-3] + "abc"
            try:
                path = template.format(httpx.URL(f"/{token}").raw_path.decode()[1:] if mangle != 2 else token[:40])
            except httpx.InvalidURL:
                return  # not expressible as a URL path
            headers = {"User-Agent": user_agent.replace("\n", " ").replace("\r", " ")[:200]}
            if content_type:
                headers["Content-Type"] = content_type
            try:
                response = client.request(method, path, content=body if method != "GET" else None, headers=headers)
            except (httpx.InvalidURL, httpx.LocalProtocolError):
                return  # the client itself refuses to send it
            COUNT["requests"] += 1
            assert response.status_code < 500, (method, path, response.status_code, response.text[:200])

        one()
    assert COUNT["requests"] >= 1000
