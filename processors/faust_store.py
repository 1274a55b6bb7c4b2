"""The one module that knows faust: its app, its tables and their changelogs, its assignor.

faust holds the worker's tables: it recovers them after a restart or a rebalance (from local RocksDB
state and its changelog's tail, or the whole changelog for memory stores), moves them with their
partitions and tells which partitions this worker holds. It runs no agent: the
feeds (:mod:`processors.partition_feed`) read beside it and write through :mod:`processors.output`.

Everything faust offers only through its internals is reached here, and only here: the current-event
context variable its RocksDB stores read a partition from, its memory store's dict, the changelog record
format (JSON key and value, :func:`processors.store.changelog_record`), its changelog topic names, and
the assignor's active partitions. A faust upgrade that changes one of them breaks this module alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, cast

import faust
import faust.streams as faust_streams
from faust.stores.memory import Store as FaustMemoryStore
from faust.types import TP
from yarl import URL

from processors.state_keys import Address, EngagementKey, MessageId, RollupKey
from processors.store import K, PartitionStore
from schemas.settings import Settings
from schemas.topics import Topics, TopicSpec, durability

# The worker's tables, by their faust names (which name their changelog topics).
SUPPRESSION, SENT_LOG, ENGAGEMENT, CAMPAIGN_TOTALS = "suppression", "sent-log", "engagement", "campaign-totals"
TABLES = (SUPPRESSION, SENT_LOG, ENGAGEMENT, CAMPAIGN_TOTALS)


def changelog_topic(settings: Settings, table: str) -> str:
    """faust's name for ``table``'s changelog topic."""
    return f"{Topics.for_prefix(settings.topic_prefix).processors_app}-{table}-changelog"


def state_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics faust keeps the tables in, created up front with the others: faust's own lazy creation
    races its partition check on a fresh cluster and crashes the worker."""
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", **durability(settings)}
    app = Topics.for_prefix(settings.topic_prefix).processors_app
    specs = [
        TopicSpec(changelog_topic(settings, table), settings.topic_partitions, settings.replication_factor, compacted)
        for table in TABLES
    ]
    specs.append(TopicSpec(f"{app}-__assignor-__leader", 1, settings.replication_factor, dict(compacted)))
    return specs


class _Message(NamedTuple):
    partition: int


class _Located:
    """Stands for faust's current event, whose partition a RocksDB store reads and writes in."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


class FaustStore(Generic[K]):
    """A faust table as a :class:`processors.store.PartitionStore`.

    The store itself, not the table: the table's layer adds only sensor hooks and, for a missing key, an
    exception raised and caught. A memory store is a dict for every partition, needing no current event
    (together several microseconds a read, about a tenth of the worker's time per event).
    """

    def __init__(self, table: Any) -> None:
        self._table = table
        self._store = table.data
        self._memory: MutableMapping[Any, Any] | None = None
        if type(self._store) is FaustMemoryStore:
            self._memory = self._store.data
            # Which partition each key is of: faust drops a revoked partition's keys by it after a rebalance.
            self._key_partition: MutableMapping[Any, int] = self._store._key_partition
        self._located: dict[int, _Located] = {}

    @property
    def name(self) -> str:
        return str(self._table.name)

    @property
    def changelog_topic(self) -> str:
        return str(self._table.changelog_topic.get_topic_name())

    def _at(self, partition: int) -> _Located:
        located = self._located.get(partition)
        if located is None:
            located = self._located[partition] = _Located(partition)
        return located

    def get(self, key: K, partition: int) -> str | None:
        if self._memory is not None:
            return self._memory.get(key)
        token = faust_streams._current_event.set(weakref.ref(cast(Any, self._at(partition))))
        try:
            return cast(str | None, self._store.get(key))
        finally:
            faust_streams._current_event.reset(token)

    def lookup(self, key: K) -> str | None:
        # Outside any event a RocksDB store looks through every partition it holds.
        return cast(str | None, self._table.get(key))

    def set(self, key: K, value: str, partition: int) -> None:
        if self._memory is not None:
            self._memory[key] = value
            self._key_partition[key] = partition
            return
        token = faust_streams._current_event.set(weakref.ref(cast(Any, self._at(partition))))
        try:
            self._store[key] = value
        finally:
            faust_streams._current_event.reset(token)

    def persisted(self, partition: int, changelog_offset: int) -> None:
        # RocksDB stores then recover only what came after, instead of the whole changelog.
        self._store.set_persisted_offset(TP(self.changelog_topic, partition), changelog_offset)


@dataclass(frozen=True)
class WorkerTables:
    suppression: PartitionStore[Address]
    sent_log: PartitionStore[MessageId]
    engagement: PartitionStore[EngagementKey]
    campaign_totals: PartitionStore[RollupKey]


def create_faust_app(settings: Settings) -> tuple[faust.App, WorkerTables]:
    """The worker's faust app, holding its tables; keyed like the topics feeding them, each worker holds
    the state of exactly the partitions it consumes."""
    # faust makes its data dir but not the var dir above it (a fresh MAILPULSE_VAR_DIR).
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        Topics.for_prefix(settings.topic_prefix).processors_app,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=settings.table_store,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        # A surviving worker that kept a standby copy takes a dead one's partitions over from the changelog's
        # tail instead of all of it.
        table_standby_replicas=settings.standby_replicas,
        processing_guarantee="at_least_once",  # exactly_once has open duplicate bugs on rebalance
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # A worker that died holds its partitions (and the suppression they gate) until this passes.
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_seconds / 3),
        web_host=settings.worker_advertised_host,
        web_bind=settings.private_host,  # faust binds every interface by default
        web_port=settings.worker_web_port,
        web_in_thread=False,
        autodiscover=False,
    )
    # JSON keys and string values: faust decodes changelog records as JSON when it recovers a table,
    # whatever the schema says, so raw bytes could not be restored after a restart.
    schema: faust.Schema = faust.Schema(key_type=str, value_type=str, key_serializer="json", value_serializer="json")

    def table(name: str) -> Any:
        return FaustStore(app.Table(name, partitions=settings.topic_partitions, schema=schema))

    tables = WorkerTables(table(SUPPRESSION), table(SENT_LOG), table(ENGAGEMENT), table(CAMPAIGN_TOTALS))
    return app, tables


Receiver = Callable[[], Awaitable[None]]


class FaustHost:
    """What the feeds and views need of faust: the partitions this worker holds, when they move, where a
    partition is served, and a place to run tasks."""

    def __init__(self, app: faust.App, follows: str) -> None:
        """``follows``: the changelog whose active partitions say which partitions this worker reads (every
        topic of the worker is co-partitioned with it)."""
        self.app, self.follows = app, follows
        # Signals hold their receivers weakly: these live as long as the host does.
        self._receivers: list[Any] = []

    @property
    def group_prefix(self) -> str:
        return str(self.app.conf.id)

    def assigned(self) -> frozenset[int]:
        """The partitions this worker holds actively (the assignment also holds standby replicas)."""
        return frozenset(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.follows)

    def settling(self) -> bool:
        """A rebalance or a table recovery is under way: nothing should be read meanwhile."""
        return bool(self.app.rebalancing or self.app.in_recovery)

    def on_rebalance(self, revoked: Receiver, assigned: Receiver, completed: Receiver) -> None:
        """Call each receiver at its step of every rebalance (revoked first, then assigned, then complete)."""

        def receiver(call: Receiver) -> Any:
            async def receive(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
                await call()

            return receive

        receivers = [receiver(revoked), receiver(assigned), receiver(completed)]
        self._receivers.extend(receivers)
        self.app.on_partitions_revoked.connect(receivers[0])
        self.app.on_partitions_assigned.connect(receivers[1])
        self.app.on_rebalance_complete.connect(receivers[2])

    def task(self, run: Callable[[], Awaitable[None]]) -> None:
        self.app.task(run)

    def owner_url(self, table: str, changelog: str, partition: int) -> URL | None:
        """The web URL of the worker serving ``partition`` of ``table``; None while nobody does."""
        for url, topics in self.app.router.table_metadata(table).items():
            if partition in topics.get(changelog, ()):
                return URL(url)
        return None

    def is_local(self, url: URL) -> bool:
        here = URL(str(self.app.conf.canonical_url))
        return (url.host, url.port) == (here.host, here.port)
