"""Topic names and settings: the one list the admin client creates from.

Every topic is keyed by the normalized recipient address (see
:func:`schemas.keys.recipient_key`) and has the same partition count, so all
records about one recipient land in the same partition number everywhere:
the sender reads the suppression table locally (co-partitioning).
The campaign partials are the exception: they are sent to their campaign's
partition, where the per-campaign rollup lives.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]

    @property
    def compacted(self) -> bool:
        return self.config.get("cleanup.policy") == "compact"


@dataclass(frozen=True)
class Topics:
    outbox: str
    events: str
    suppression: str
    retry: str
    dead_letter: str
    campaign_partials: str
    alerts: str
    # The campaign lifecycle (queued, paused, resumed, cancelled): one partition, every worker reads all of it.
    campaigns: str
    # Send requests of paused campaigns, waiting for their campaign to be resumed or cancelled.
    held: str
    # The worker's faust app id: its consumer groups and state topics are named after it
    # (processors.faust_store.state_topic_specs).
    processors_app: str

    @classmethod
    def for_prefix(cls, prefix: str) -> Topics:
        return cls(
            outbox=f"{prefix}.outbox",
            events=f"{prefix}.events",
            suppression=f"{prefix}.suppression",
            retry=f"{prefix}.retry",
            dead_letter=f"{prefix}.dlq",
            campaign_partials=f"{prefix}.campaign-partials",
            alerts=f"{prefix}.alerts",
            campaigns=f"{prefix}.campaigns",
            held=f"{prefix}.held",
            processors_app=f"{prefix}-processors",
        )


def durability(settings: Settings) -> dict[str, str]:
    """The config every topic gets, ours and the worker's state topics: how many copies take a write."""
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    names = Topics.for_prefix(settings.topic_prefix)
    retention = {"cleanup.policy": "delete", "retention.ms": str(settings.events_retention_ms)}
    # State topics keep the latest record per recipient forever: they rebuild state.
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}

    def spec(name: str, config: dict[str, str], partitions: int = settings.topic_partitions) -> TopicSpec:
        return TopicSpec(name, partitions, settings.replication_factor, {**config, **durability(settings)})

    return [
        spec(names.outbox, retention),
        spec(names.events, retention),
        spec(names.suppression, compacted),
        spec(names.retry, retention),
        spec(names.dead_letter, retention),
        # Keyed by campaign, source partition and hour: compaction keeps each one's latest count.
        spec(names.campaign_partials, compacted),
        spec(names.alerts, retention),
        # One partition: the lifecycle of every campaign in one order, read whole by every worker. Keyed
        # so that compaction keeps each campaign's latest state and every record of what was queued.
        spec(names.campaigns, compacted, partitions=1),
        spec(names.held, retention),
    ]
