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

from producers.service_client import ServiceClient
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
        self.worker = ServiceClient(settings.worker_url, keys, timeout, WorkerUnavailable)

    async def state(self, campaign: str) -> dict[str, Any] | None:
        """The book's record of ``campaign``; None when it has none (never queued nor paused: active)."""
        async with httpx.AsyncClient() as client:
            state: dict[str, Any] | None = await self.worker.get_json(
                client, f"/campaigns/{quote(campaign, safe='')}", missing_ok=True
            )
        return state

    async def status(self, campaign: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            stats = await self.worker.get_json(client, f"/stats/{quote(campaign, safe='')}")
        return status_of(await self.state(campaign), campaign, stats)

    async def statuses(self) -> list[dict[str, Any]]:
        """Every campaign the book knows, with its progress."""
        async with httpx.AsyncClient() as client:
            statuses = []
            for state in await self.worker.get_json(client, "/campaigns"):
                stats = await self.worker.get(client, f"/stats/{quote(state['campaign'], safe='')}")
                statuses.append(status_of(state, state["campaign"], stats.json() if stats.status_code == 200 else {}))
        return statuses
