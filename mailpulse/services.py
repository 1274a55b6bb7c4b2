"""Foreground entry points of the long-running services (the supervisor runs each as a process)."""

from __future__ import annotations

import logging

from mailpulse.edge_server import Listener, run_edges
from producers.app import create_operator_app, create_public_app
from producers.bounce_intake import Attribution, BounceMailHandler, Keeper, start_receiver
from producers.mailto_unsubscribe import MailtoUnsubscribes
from producers.message_lookup import MessageLookup
from producers.metrics import EdgeMetrics
from producers.publisher import KafkaPublisher
from schemas.mailto import MailtoAddresses
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)


def serve_edge(settings: Settings) -> None:
    """Public edge and operator edge, one process, two ports: the routes never share a router."""
    settings.refuse_development_secret()
    if settings.uses_dev_secret:
        log.warning("MAILPULSE_ENV=development: using the development secret; links are forgeable")
    if not settings.api_keys:
        log.warning("MAILPULSE_API_KEYS is not set: every operator route answers 401")
    # One set of metrics for both apps, served on the operator port only.
    metrics = EdgeMetrics.create()
    listeners = [
        Listener(create_public_app(settings, metrics=metrics), settings.edge_host, settings.edge_port),
        Listener(create_operator_app(settings, metrics=metrics), settings.private_host, settings.operator_port),
    ]

    receiver = None
    if settings.bounce_smtp_port:
        # Bounce mail and mailto: unsubscribes arrive over SMTP at the edge process, which owns a Kafka producer anyway.
        publisher, topics = KafkaPublisher(settings), Topics.for_prefix(settings.topic_prefix)
        lookup = MessageLookup(settings.sink_url, settings.api_keys)
        unsubscribes = MailtoUnsubscribes(
            MailtoAddresses(settings.secret_keys),
            settings.unsubscribe_domain,
            lookup,
            publisher,
            topics,
            settings.publish_timeout_seconds,
        )
        handler = BounceMailHandler(
            publisher,
            topics,
            Keeper.from_settings(settings),
            settings.publish_timeout_seconds,
            Attribution.from_settings(settings),
            settings.bounce_domain,
            metrics,
            unsubscribes,
        )
        receiver = start_receiver(handler, settings.edge_host, settings.bounce_smtp_port, settings.bounce_max_bytes)
        log.info("bounce-mail receiver on %s:%d", settings.edge_host, settings.bounce_smtp_port)

    try:
        run_edges(settings, listeners)
    finally:
        if receiver is not None:
            receiver.stop()
            receiver.handler.publisher.close()


def serve_worker(settings: Settings) -> None:
    from faust.worker import Worker

    from processors.app import create_app

    # The worker mints the links: with the published key anyone could forge them.
    settings.refuse_development_secret()
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    # No terminal spinner: at WARNING and above faust keeps it and, to spin on every record, sets the root
    # logger to DEBUG, so every debug call in the worker built a record to throw away (~2 % of its time).
    worker.spinner = None
    worker.execute_from_commandline()
