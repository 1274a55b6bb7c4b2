"""Operator API keys, shared by every operator route (edge intake, sink query API, worker views).

A key arrives as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` and is
compared in constant time against every configured key.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any


def presented_key(headers: Mapping[str, str]) -> str:
    auth = headers.get("authorization", "") or headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key", "") or headers.get("X-API-Key", "")


def key_is_valid(presented: str, keys: Sequence[str]) -> bool:
    if not presented:
        return False
    # Compare against every key so timing reveals neither which key matched nor how early.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    return matched


def auth_headers(keys: Sequence[str]) -> dict[str, str]:
    """Headers a CLI call sends to an operator route with the first configured key."""
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


class ApiKeyMiddleware:
    """Pure ASGI middleware for operator apps: 401 unless a configured key is presented.

    ``open_paths`` (health checks) stay reachable without a key. With no key
    configured every other request is refused: operator routes never open by default.
    """

    def __init__(self, app: Any, keys: Sequence[str], open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.keys = tuple(keys)
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if not key_is_valid(presented_key(headers), self.keys):
                body = b'{"error":"missing or invalid API key"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
