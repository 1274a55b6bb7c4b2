"""Whom a message was sent to, asked of the sink (its `sent` event in ClickHouse): the recipient and list a
mailto: unsubscribe is for. The address names only the message (:mod:`schemas.mailto`)."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.auth import auth_headers


class LookupUnavailable(RuntimeError):
    """The sink could not be asked, or did not answer as it should: try again later."""


class MessageLookup:
    def __init__(self, sink_url: str, keys: tuple[str, ...], timeout: float = 5.0) -> None:
        self.base, self.timeout = sink_url, timeout
        self.headers = auth_headers(keys) if keys else {}

    async def __call__(self, message_id: str) -> dict[str, Any] | None:
        """The message's recipient, campaign and list; None while the sink has no `sent` for it."""
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    f"{self.base}/messages/{message_id}", headers=self.headers, timeout=self.timeout
                )
        except httpx.HTTPError as exc:
            raise LookupUnavailable(f"the sink at {self.base} did not answer: {exc}") from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise LookupUnavailable(f"the sink answered {answer.status_code}: {answer.text[:200]}")
        found: dict[str, Any] = answer.json()
        return found
