"""The worker's HTTP views: suppression lookups and live campaign stats (operator routes, API key
required), health and Prometheus metrics.

A lookup is answered by the worker that holds the key's partition; any other worker forwards it
there, so every worker answers for every key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors import engagement as eng
from processors.forwarding import HEADER as FORWARDED
from processors.forwarding import forward_headers, is_forwarded
from processors.metrics import WorkerMetrics
from processors.routing import is_local, owner_url, partition_for
from processors.suppression import decode_entry, suppression_reasons
from schemas.auth import key_is_valid, presented_key
from schemas.keys import normalize_address
from schemas.settings import Settings


def register_views(
    app: faust.App,
    settings: Settings,
    *,
    suppression: Any,
    campaign_totals: Any,
    metrics: WorkerMetrics,
    current: Callable[[Any, str], Any],
) -> None:
    """``current(table, key)``: the value the worker's feeds see, its latest write included before Kafka
    acknowledged it. A suppression lookup answers what the sender's gate answers now: an unsubscribe
    stops mail from the moment its batch applied it, and the event behind it was acknowledged before
    its 200, so a crash applies it again."""

    def forwarded(request: Request) -> bool:
        return is_forwarded(settings.secret_keys, request.headers.get(FORWARDED), request.url.path_qs, time.time())

    def authorized(request: Request) -> bool:
        return key_is_valid(presented_key(dict(request.headers)), settings.api_keys) or forwarded(request)

    async def from_owner(view: View, request: Request, table: Any, key: str) -> Response | None:
        """The owner's answer when another worker holds ``key``; None when this worker should answer."""
        if forwarded(request):
            return None  # answer with what we hold: no forwarding loops during a rebalance
        owner = owner_url(app, table, partition_for(key.encode(), settings.topic_partitions))
        if owner is None:
            return view.json({"error": "no worker holds this key right now (rebalancing); retry"}, status=503)
        if is_local(app, owner):
            return None
        url = request.url.with_host(owner.host or "127.0.0.1").with_port(owner.port)
        # Signed for this path alone: the caller's API key never leaves this worker.
        headers = forward_headers(settings.secret_keys, url.path_qs, time.time())
        async with app.http_client.get(url, headers=headers) as answer:
            return view.text(await answer.text(), content_type=answer.content_type, status=answer.status)

    @app.page("/suppression/{address}")
    class SuppressionView(View):
        async def get(self, request: Request, address: str) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            normalized = normalize_address(address)
            forwarded = await from_owner(self, request, suppression, normalized)
            if forwarded is not None:
                return forwarded
            entry = decode_entry(current(suppression, normalized))
            reasons = suppression_reasons(entry)
            return self.json(
                {
                    "address": normalized,
                    "suppressed": bool(reasons),
                    "reasons": reasons,
                    "lists": list(entry.lists),
                    "since": entry.since.isoformat() if entry.since and reasons else None,
                    "caused_by": entry.caused_by or None,
                }
            )

    @app.page("/stats/{campaign}")
    class StatsView(View):
        async def get(self, request: Request, campaign: str) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            by = request.query.get("by", "")
            if by not in ("", "hour"):
                return self.json({"error": "by must be 'hour' when given"}, status=400)
            forwarded = await from_owner(self, request, campaign_totals, campaign)
            if forwarded is not None:
                return forwarded
            rollup = eng.decode_rollup(campaign_totals.get(campaign))
            if by == "hour":
                hours = []
                for hour in rollup.hours:
                    held = eng.decode_rollup(campaign_totals.get(eng.hour_key(campaign, hour)))
                    counts = eng.total(held.partials.values())
                    hours.append({"hour": eng.hour_start(hour).isoformat(), **eng.report(counts)})
                return self.json(hours)
            return self.json(eng.report(eng.total(rollup.partials.values())))

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            """Ready once partitions are assigned and tables recovered: lookups then have an owner."""
            assigned = len(app.assignor.assigned_actives())
            ready = assigned > 0 and not app.rebalancing and not app.in_recovery
            return self.json({"ok": ready, "partitions": assigned}, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp takes the charset apart from the content type.
            return self.text(generate_latest(metrics.registry).decode(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
