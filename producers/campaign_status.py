"""A campaign's state and progress, as a worker knows them: for the operator edge's routes and pages and the
`mailpulse campaign` commands.

The state (active, paused, cancelled, and when and why) comes from the worker's campaign book, which every
worker holds whole; the counts from its live stats (the worker holding the campaign answers, asked by any
other). Progress is what the sender is done with (sent, failed or skipped) of what was queued.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from schemas.auth import auth_headers
from schemas.settings import Settings

# The counts and rates a campaign's status shows beside its state.
PROGRESS_KEYS = ("sent", "delivered", "failed", "skipped", "deferred", "bounced_hard", "blocked", "complaints")
RATE_KEYS = ("open_rate", "click_rate", "bounce_rate", "complaint_rate")


class WorkerUnavailable(RuntimeError):
    """No worker answered, or it answered something else than a campaign's state."""


def status_of(state: dict[str, Any] | None, campaign: str, stats: dict[str, Any]) -> dict[str, Any]:
    """One campaign's status: its state (active when the book has no record of it) and its progress."""
    status: dict[str, Any] = {
        "campaign": campaign,
        "state": "active",
        "queued": 0,
        "paused_at": None,
        "cancelled_at": None,
        "since": None,
        "reason": "",
        "source": "",
        **(state or {}),
    }
    for key in PROGRESS_KEYS:
        status[key] = int(stats.get(key, 0))
    for key in RATE_KEYS:
        status[key] = float(stats.get(key, 0.0))
    done = status["sent"] + status["failed"] + status["skipped"]
    status["progress"] = round(min(1.0, done / status["queued"]), 4) if status["queued"] else None
    status.pop("changed_by", None)
    return status


class WorkerClient:
    """Asks the worker at ``MAILPULSE_WORKER_URL`` with an operator key."""

    def __init__(self, settings: Settings, keys: tuple[str, ...], timeout: float = 10.0) -> None:
        self.base = settings.worker_url
        self.headers = auth_headers(keys) if keys else {}
        self.timeout = timeout

    async def _get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        try:
            return await client.get(f"{self.base}{path}", headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(f"no worker answers at {self.base}: {exc}") from None

    async def state(self, campaign: str) -> dict[str, Any] | None:
        """The book's record of ``campaign``; None when it has none (never queued nor paused: active)."""
        async with httpx.AsyncClient() as client:
            answer = await self._get(client, f"/campaigns/{quote(campaign, safe='')}")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise WorkerUnavailable(f"the worker answered {answer.status_code}: {answer.text[:200]}")
        state: dict[str, Any] = answer.json()
        return state

    async def status(self, campaign: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            stats = await self._get(client, f"/stats/{quote(campaign, safe='')}")
        if stats.status_code != 200:
            raise WorkerUnavailable(f"the worker answered {stats.status_code}: {stats.text[:200]}")
        return status_of(await self.state(campaign), campaign, stats.json())

    async def statuses(self) -> list[dict[str, Any]]:
        """Every campaign the book knows, with its progress."""
        async with httpx.AsyncClient() as client:
            answer = await self._get(client, "/campaigns")
            if answer.status_code != 200:
                raise WorkerUnavailable(f"the worker answered {answer.status_code}: {answer.text[:200]}")
            statuses = []
            for state in answer.json():
                stats = await self._get(client, f"/stats/{quote(state['campaign'], safe='')}")
                statuses.append(status_of(state, state["campaign"], stats.json() if stats.status_code == 200 else {}))
        return statuses
