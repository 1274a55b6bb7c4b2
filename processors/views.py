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

from processors import campaign_totals as totals
from processors import engagement as eng
from processors.campaign_book import CampaignBook
from processors.faust_store import FaustHost
from processors.forwarding import HEADER as FORWARDED
from processors.forwarding import forward_headers, is_forwarded
from processors.metrics import WorkerMetrics
from processors.routing import partition_for
from processors.state_keys import Address, RollupKey, RollupKeys, address
from processors.store import PartitionStore
from processors.suppression import decode_entry, suppression_reasons
from schemas.auth import key_is_valid, presented_key
from schemas.settings import Settings

# What the worker's feeds see of a key, its latest write included before Kafka acknowledged it.
Current = Callable[[PartitionStore[Any], Any], str | None]
# Each feed's standing (:meth:`processors.partition_feed.PartitionFeed.status`), by feed name.
FeedStatus = Callable[[], dict[str, dict[str, Any]]]


def register_views(
    app: faust.App,
    host: FaustHost,
    settings: Settings,
    suppression: PartitionStore[Address],
    campaign_totals: PartitionStore[RollupKey],
    campaigns: CampaignBook,
    metrics: WorkerMetrics,
    current: Current,
    feeds: FeedStatus,
) -> None:
    """``current(table, key)``: the value the worker's feeds see, its latest write included before Kafka
    acknowledged it. A suppression lookup answers what the sender's gate answers now: an unsubscribe
    stops mail from the moment its batch applied it, and the event behind it was acknowledged before
    its 200, so a crash applies it again."""

    def forwarded(request: Request) -> bool:
        return is_forwarded(settings.secret_keys, request.headers.get(FORWARDED), request.url.path_qs, time.time())

    def authorized(request: Request) -> bool:
        return key_is_valid(presented_key(dict(request.headers)), settings.api_keys) or forwarded(request)

    async def from_owner(view: View, request: Request, store: PartitionStore[Any], key: str) -> Response | None:
        """The owner's answer when another worker holds ``key``; None when this worker should answer."""
        if forwarded(request):
            return None  # answer with what we hold: no forwarding loops during a rebalance
        partition = partition_for(key.encode(), settings.topic_partitions)
        owner = host.owner_url(store.name, store.changelog_topic, partition)
        if owner is None:
            return view.json({"error": "no worker holds this key right now (rebalancing); retry"}, status=503)
        if host.is_local(owner):
            return None
        url = request.url.with_host(owner.host or "127.0.0.1").with_port(owner.port)
        # Signed for this path alone: the caller's API key never leaves this worker.
        headers = forward_headers(settings.secret_keys, url.path_qs, time.time())
        async with app.http_client.get(url, headers=headers) as answer:
            return view.text(await answer.text(), content_type=answer.content_type, status=answer.status)

    @app.page("/suppression/{recipient}")
    class SuppressionView(View):
        async def get(self, request: Request, recipient: str) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            normalized = address(recipient)
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
            rollup = totals.decode_rollup(campaign_totals.lookup(RollupKeys.campaign(campaign)))
            if by == "hour":
                hours = []
                for hour in rollup.hours:
                    held = totals.decode_rollup(campaign_totals.lookup(RollupKeys.hour(campaign, hour)))
                    counts = totals.total(held.partials.values())
                    hours.append({"hour": eng.hour_start(hour).isoformat(), **totals.report(counts)})
                return self.json(hours)
            return self.json(totals.report(totals.total(rollup.partials.values())))

    @app.page("/campaigns")
    class CampaignsView(View):
        async def get(self, request: Request) -> Response:
            """Every campaign's state as this worker's gate applies it (every worker reads every campaign)."""
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            return self.json([status.as_dict() for status in campaigns.all()])

    @app.page("/campaigns/{campaign}")
    class CampaignView(View):
        async def get(self, request: Request, campaign: str) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            status = campaigns.status(campaign)
            if status is None:
                return self.json({"error": f"no campaign {campaign!r} is known"}, status=404)
            return self.json(status.as_dict())

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            """Ready once partitions are assigned and tables recovered: lookups then have an owner."""
            assigned = len(host.assigned())
            ready = assigned > 0 and not host.settling()
            return self.json({"ok": ready, "partitions": assigned}, status=200 if ready else 503)

    @app.page("/feeds")
    class Feeds(View):
        async def get(self, request: Request) -> Response:
            """What each feed reads and what holds it up: the first place to look when a partition's
            backlog does not move (its partitions, those resting, the batches in hand and their age)."""
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            host_state = {
                "partitions": sorted(host.assigned()),
                "rebalancing": bool(app.rebalancing),
                "in_recovery": bool(app.in_recovery),
            }
            return self.json({"worker": host_state, "feeds": feeds()})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp takes the charset apart from the content type.
            return self.text(generate_latest(metrics.registry).decode(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
