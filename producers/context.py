"""What an edge request handler needs, owned by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from producers.metrics import EdgeMetrics
from producers.publisher import Publisher
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

    def require_publisher(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("edge used outside its lifespan (no Kafka publisher)")
        return self.publisher

    def publish_event(self, event: AnyEvent) -> None:
        self.require_publisher().publish(
            self.topics.events, recipient_key(event.recipient, event.campaign_id), encode(event)
        )
        self.metrics.published.labels(event.kind).inc()

    async def publish_event_confirmed(self, event: AnyEvent) -> None:
        await self.require_publisher().publish_confirmed(
            self.topics.events,
            recipient_key(event.recipient, event.campaign_id),
            encode(event),
            self.settings.publish_timeout_seconds,
        )
        self.metrics.published.labels(event.kind).inc()
