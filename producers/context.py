"""What an edge request handler needs, owned by the app's lifespan."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from producers.metrics import EdgeMetrics
from producers.pixel_offload import PixelOffload
from producers.publisher import Publisher
from producers.webhooks.mailgun import ReplayGuard
from producers.webhooks.sendgrid import load_public_key as load_sendgrid_key
from schemas.codec import encode
from schemas.events import AnyEvent
from schemas.keys import recipient_key
from schemas.settings import Settings
from schemas.tokens import TokenCodec
from schemas.topics import Topics


@dataclass
class EdgeContext:
    settings: Settings
    tokens: TokenCodec
    topics: Topics
    metrics: EdgeMetrics
    publisher: Publisher | None = None
    pixels: PixelOffload | None = None
    # Network calls of the SES/SNS webhook, replaceable where no network is (tests).
    sns_certificates: Callable[[str], bytes] = field(default=lambda url: b"")
    sns_confirm: Callable[[str], None] = field(default=lambda url: None)
    mailgun_replays: ReplayGuard = field(init=False)

    def __post_init__(self) -> None:
        self.mailgun_replays = ReplayGuard(self.settings.webhook_max_age_seconds * 2)

    @functools.cached_property
    def sendgrid_key(self) -> ec.EllipticCurvePublicKey:
        return load_sendgrid_key(self.settings.sendgrid_public_key)

    def require_publisher(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("edge used outside its lifespan (no Kafka publisher)")
        return self.publisher

    def publish_event(self, event: AnyEvent) -> None:
        self.require_publisher().publish(
            self.topics.events, recipient_key(event.recipient, event.campaign_id), encode(event)
        )
        self.metrics.published_counter(event.kind).inc()

    async def publish_event_confirmed(self, event: AnyEvent) -> None:
        await self.require_publisher().publish_confirmed(
            self.topics.events,
            recipient_key(event.recipient, event.campaign_id),
            encode(event),
            self.settings.publish_timeout_seconds,
        )
        self.metrics.published_counter(event.kind).inc()
