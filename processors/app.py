"""The worker: faust holds the tables, four feeds do the work, the views answer lookups. Wiring only.

===========  ======================  ==========================================  ====================
feed         reads                   job                                         resumes from
===========  ======================  ==========================================  ====================
events       ``<prefix>.events``     suppression and engagement                  the table's marks
rollup       ``.campaign-partials``  campaign totals, complaint alerts           the table's marks
sender       ``<prefix>.outbox``     gate, hand-off, outcomes                    committed offsets
retries      ``<prefix>.retry``      due requests back to the outbox             committed offsets
held         ``<prefix>.held``       a paused campaign's requests, once resumed  committed offsets
campaigns    ``.campaigns`` (all)    every campaign's state, for the gate        the beginning
===========  ======================  ==========================================  ====================

Each feed reads beside faust's consumer (:mod:`processors.partition_feed`), on the partitions faust
gave this worker; the sender hands a message off only while its partition's acknowledged events are
applied (:mod:`processors.caught_up`); everything it writes goes through the one :class:`processors.output.Output`. The
architecture is in docs/architecture.md, what each step guarantees in docs/guarantees.md.
"""

from __future__ import annotations

import faust

from processors.campaign_book import CampaignBook
from processors.caught_up import CaughtUp, KafkaWatermarks
from processors.control_feed import ControlFeed
from processors.courier import Courier
from processors.event_tracking import EventTracker
from processors.faust_store import FaustHost, changelog_topic, create_faust_app
from processors.feed import FeedProgress, Handler, ResumeFrom
from processors.held import HeldRelease
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

    # Mail handed over but not begun is checked again when its recipient's suppression changes, or when its
    # partition's events fall behind: the delivery process's queue (a second or more on a starved machine)
    # never carries a message past an unsubscribe.
    tracker = EventTracker(
        tables.suppression, tables.engagement, settings, metrics, on_suppressed=lambda a: courier.recheck(recipient=a)
    )
    events = MarkedFeed(output, tables.engagement, EngagementKeys.mark, tracker.apply)
    rollup = CampaignRollup(tables.campaign_totals, settings, metrics)
    partials = MarkedFeed(output, tables.campaign_totals, RollupKeys.mark, rollup.apply)
    book = CampaignBook()
    control = ControlFeed(names.campaigns, settings.bootstrap_servers, book, metrics)
    host.task(control.run)
    caught_up = CaughtUp(
        KafkaWatermarks(names.events, settings.bootstrap_servers, settings.topic_partitions),
        on_behind=lambda p: courier.recheck(partition=p),
        rebalancing=host.settling,
    )
    host.task(caught_up.run)
    sender = Sender(output, tables.suppression, tables.sent_log, courier, control, caught_up, settings, metrics)
    retries = RetryRelease(output, settings, metrics)
    held = HeldRelease(output, control, settings, metrics)

    # name, topic, batch size, handler, resume marks, batches in hand (the sender gates the next batch
    # while this one's last messages go out), who follows its progress. Each feed has a consumer of its own:
    # a backlog of sends or retries never delays an event.
    feeds: list[tuple[str, str, int, Handler, ResumeFrom | None, int, FeedProgress | None]] = [
        ("events", names.events, settings.event_batch_size, events.handle, events.resume_from, 2, caught_up),
        ("rollup", names.campaign_partials, settings.event_batch_size, partials.handle, partials.resume_from, 1, None),
        ("sender", names.outbox, settings.send_batch_size, sender.handle, None, 2, None),
        ("retries", names.retry, RETRY_BATCH_SIZE, retries.handle, None, 1, None),
        ("held", names.held, RETRY_BATCH_SIZE, held.handle, None, 1, None),
    ]
    connected = {}
    for name, topic, batch_size, handle, resume_from, depth, progress in feeds:
        connected[name] = PartitionFeed(
            host, name=name, topic=topic, bootstrap_servers=settings.bootstrap_servers, batch_size=batch_size,
            handle=handle, resume_from=resume_from, depth=depth, progress=progress,
        )  # fmt: skip
        connected[name].connect()

    def campaigns_changed(changed: set[str]) -> None:
        for campaign in changed:
            if book.reasons(campaign):  # paused or cancelled: the delivery process gives its queue back
                courier.withdraw(campaign)
        held.wake(connected["held"])  # resumed or cancelled: what it held goes out (or is skipped) now

    control.on_change(campaigns_changed)

    register_views(
        app, host, settings, tables.suppression, tables.campaign_totals, book, metrics, output.current,
        feeds=lambda: {name: feed.status() for name, feed in connected.items()},
    )  # fmt: skip
    return app
