"""Asking another service of the stack (the worker's views, the sink's API) for JSON with an operator key."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.auth import auth_headers


class ServiceClient:
    """GETs from the service at ``base``; ``unavailable`` is raised when it cannot be asked or answers wrong."""

    def __init__(self, base: str, keys: tuple[str, ...], timeout: float, unavailable: type[Exception]) -> None:
        self.base, self.timeout, self.unavailable = base, timeout, unavailable
        self.headers = auth_headers(keys) if keys else {}

    async def get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        try:
            return await client.get(f"{self.base}{path}", headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise self.unavailable(f"nothing answers at {self.base}: {exc}") from None

    async def get_json(self, client: httpx.AsyncClient, path: str, missing_ok: bool = False) -> Any:
        """The answer's JSON; None for a 404 when ``missing_ok``; ``unavailable`` for any other status."""
        answer = await self.get(client, path)
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code != 200:
            raise self.unavailable(f"{self.base} answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()
