"""Whom a message was sent to, asked of the sink (its `sent` event in ClickHouse): the recipient and list a
mailto: unsubscribe is for. The address names only the message (:mod:`schemas.mailto`)."""

from __future__ import annotations

from typing import Any

import httpx

from producers.service_client import ServiceClient


class LookupUnavailable(RuntimeError):
    """The sink could not be asked, or did not answer as it should: try again later."""


class MessageLookup:
    def __init__(self, sink_url: str, keys: tuple[str, ...], timeout: float = 5.0) -> None:
        self.sink = ServiceClient(sink_url, keys, timeout, LookupUnavailable)

    async def __call__(self, message_id: str) -> dict[str, Any] | None:
        """The message's recipient, campaign and list; None while the sink has no `sent` for it."""
        async with httpx.AsyncClient() as client:
            found: dict[str, Any] | None = await self.sink.get_json(client, f"/messages/{message_id}", missing_ok=True)
        return found
