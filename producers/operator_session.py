"""Who may open the operator edge: an API key on every route, or a signed-in browser on the pages.

A person signs in with an API key on ``/login`` (or through a short-lived link `mailpulse report --open`
prints); the session is a cookie signed with a key derived from the operator's secrets (Starlette's
SessionMiddleware, itsdangerous), HttpOnly and SameSite=Strict, and it holds a fingerprint of the key it
was opened with, so removing that key from ``MAILPULSE_API_KEYS`` closes the sessions it opened. A session
opens the pages under ``/ui`` only; their forms carry the session's CSRF token. Everything else keeps
wanting the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from schemas.auth import ApiKeyMiddleware
from schemas.key_derivation import Purpose, derive_key

PAGES = "/ui/"
SESSION_COOKIE = "mailpulse_session"
SESSION_SECONDS = 8 * 3600
LINK_SECONDS = 300


def fingerprint(key: str) -> str:
    return hashlib.sha256(f"mailpulse-operator\x00{key}".encode()).hexdigest()[:32]


def session_secret(secret_keys: Sequence[str]) -> str:
    return derive_key(secret_keys[0], Purpose.OPERATOR_SESSION).hex()


def open_session(session: dict[str, Any], key: str) -> None:
    """Sign a browser in with ``key`` (already checked)."""
    session.clear()
    session["operator"] = fingerprint(key)
    session["csrf"] = secrets.token_urlsafe(24)


def signed_in(session: dict[str, Any], keys: Sequence[str]) -> bool:
    held = session.get("operator")
    if not isinstance(held, str):
        return False
    found = False
    for key in keys:  # every key compared: timing says nothing about which matched
        found |= hmac.compare_digest(held, fingerprint(key))
    return found


def csrf_ok(session: dict[str, Any], presented: str | None) -> bool:
    expected = session.get("csrf")
    return isinstance(expected, str) and presented is not None and hmac.compare_digest(expected, presented)


def _links(key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(derive_key(key, Purpose.OPERATOR_LINK).hex(), salt="mailpulse-open")


def sign_in_link(key: str, base_url: str, path: str) -> str:
    """A link that signs a browser in and opens ``path``, for :data:`LINK_SECONDS` (made with an operator key)."""
    return f"{base_url}/open?link={quote(_links(key).dumps({'to': path}))}"


def read_link(token: str, keys: Sequence[str]) -> tuple[str, str] | None:
    """The key a link was made with and the path it opens; None when forged, or older than LINK_SECONDS."""
    for key in keys:
        try:
            claims = _links(key).loads(token, max_age=LINK_SECONDS)
        except SignatureExpired:
            return None
        except BadSignature:
            continue
        path = claims.get("to") if isinstance(claims, dict) else None
        if isinstance(path, str) and path.startswith(PAGES):
            return key, path
    return None


class OperatorAuth(ApiKeyMiddleware):
    """The API key everywhere, or a signed-in session on the pages; a page without either sends the
    browser to sign in."""

    def __init__(self, app: Any, keys: Sequence[str], open_paths: frozenset[str] = frozenset()) -> None:
        super().__init__(app, keys, open_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PAGES):
            if signed_in(scope.get("session", {}), self.keys):
                await self.app(scope, receive, send)
                return
            if scope["method"] == "GET":
                location = f"/login?next={quote(scope['path'])}".encode()
                await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location)]})
                await send({"type": "http.response.body", "body": b""})
                return
        await super().__call__(scope, receive, send)
