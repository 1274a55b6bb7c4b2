"""The worker: faust holds the tables, four feeds do the work, the views answer lookups. Wiring only.

===========  ======================  ==========================================  ====================
feed         reads                   job                                         resumes from
===========  ======================  ==========================================  ====================
events       ``<prefix>.events``     suppression and engagement                  the table's marks
rollup       ``.campaign-partials``  campaign totals, complaint alerts           the table's marks
sender       ``<prefix>.outbox``     gate, hand-off, outcomes                    committed offsets
retries      ``<prefix>.retry``      due requests back to the outbox             committed offsets
===========  ======================  ==========================================  ====================

Each feed reads beside faust's consumer (:mod:`processors.partition_feed`), on the partitions faust
gave this worker; everything it writes goes through the one :class:`processors.output.Output`. The
architecture is in docs/architecture.md, what each step guarantees in docs/guarantees.md.
"""

from __future__ import annotations

import faust

from processors.courier import Courier
from processors.event_tracking import EventTracker
from processors.faust_store import FaustHost, changelog_topic, create_faust_app
from processors.feed import Handler, ResumeFrom
from processors.marks import MarkedFeed
from processors.metrics import WorkerMetrics
from processors.output import Output
from processors.partition_feed import PartitionFeed
from processors.retries import RetryRelease
from processors.rollup import CampaignRollup
from processors.sender import Sender
from processors.state_keys import EngagementKeys, RollupKeys
from processors.views import register_views
from schemas.settings import Settings
from schemas.topics import Topics

RETRY_BATCH_SIZE = 500


def create_app(settings: Settings) -> faust.App:
    names = Topics.for_prefix(settings.topic_prefix)
    app, tables = create_faust_app(settings)
    host = FaustHost(app, follows=changelog_topic(settings, "engagement"))
    metrics = WorkerMetrics()
    output = Output(settings)
    courier = Courier(settings, on_exit=metrics.delivery_exits.inc)
    metrics.delivery_in_flight.set_function(courier.in_flight)
    # Spawned with the worker, not by the first message: its start would delay that campaign's first sends,
    # and a relay that is down shows in the log at once.
    host.task(courier.start)

    tracker = EventTracker(tables.suppression, tables.engagement, settings, metrics)
    events = MarkedFeed(output, tables.engagement, EngagementKeys.mark, tracker.apply)
    rollup = CampaignRollup(tables.campaign_totals, settings, metrics)
    partials = MarkedFeed(output, tables.campaign_totals, RollupKeys.mark, rollup.apply)
    sender = Sender(output, tables.suppression, tables.sent_log, courier, settings, metrics)
    retries = RetryRelease(output, settings, metrics)

    # name, topic, batch size, handler, resume marks, batches in hand (the sender gates the next batch
    # while this one's last messages go out). Each feed has a consumer of its own: a backlog of sends or
    # retries never delays an event.
    feeds: list[tuple[str, str, int, Handler, ResumeFrom | None, int]] = [
        ("events", names.events, settings.event_batch_size, events.handle, events.resume_from, 1),
        ("rollup", names.campaign_partials, settings.event_batch_size, partials.handle, partials.resume_from, 1),
        ("sender", names.outbox, settings.send_batch_size, sender.handle, None, 2),
        ("retries", names.retry, RETRY_BATCH_SIZE, retries.handle, None, 1),
    ]
    for name, topic, batch_size, handle, resume_from, depth in feeds:
        PartitionFeed(
            host,
            name=name,
            topic=topic,
            bootstrap_servers=settings.bootstrap_servers,
            batch_size=batch_size,
            handle=handle,
            resume_from=resume_from,
            depth=depth,
        ).connect()

    register_views(
        app,
        host,
        settings,
        suppression=tables.suppression,
        campaign_totals=tables.campaign_totals,
        metrics=metrics,
        current=output.current,
    )
    return app
